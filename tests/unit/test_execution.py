"""When a run counts as its call's timeout (mcp_sidecar.jupyter.execution.timeout_reason)."""

from __future__ import annotations

import time

from mcp_sidecar.jupyter.execution import timeout_reason
from mcp_sidecar.jupyter.kernels import Execution


def run(elapsed: float, *, began: bool) -> Execution:
    execution = Execution(id="e1", kernel_id="k1", code="x")
    if began:
        execution.apply({"header": {"msg_type": "status"}, "parent_header": {"msg_id": "e1"}, "content": {}})
    execution.started = time.monotonic() - elapsed
    return execution


async def test_interrupted_for_its_timeout() -> None:
    execution = run(31.0, began=True)
    execution.time_out(30.0)
    assert timeout_reason(execution, 30.0) == "timed out after 30 s; kernel interrupted"


async def test_queued_for_all_of_its_timeout() -> None:
    assert timeout_reason(run(12.4, began=False), 10.0) == (
        "queued behind other code for 12 s; nothing interrupted"
    )


async def test_queued_with_time_left_or_running_or_done_is_no_timeout() -> None:
    assert timeout_reason(run(1.0, began=False), 60.0) is None  # returned early, still queued
    assert timeout_reason(run(70.0, began=True), 60.0) is None  # running: the driver decides
