"""Every call to a known tool is audited and counted, whatever stops it (issue 15 §2): the SDK
validated arguments before the guard, so 10 of 46 calls with wrong types or missing arguments left
no audit line and no metric. Sent as raw JSON against the real sidecar and Jupyter server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.jupyter import RunningSidecar
from tests.harness.raw_mcp import RawSession, audit_lines, metric, result_text

pytestmark = pytest.mark.timeout(120)

BAD_CALLS = [
    ("execute_code", {"path": "x.ipynb"}, "code is required"),
    ("list_files", {"path": "", "depth": "deep"}, "depth"),
    ("insert_cell", {"path": "x.ipynb", "source": "1", "index": {"at": 1}}, "index"),
    ("read_notebook", {"path": "x.ipynb", "detail": "everything"}, "detail"),
]


@pytest.mark.parametrize(("tool", "arguments", "named"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
async def test_a_bad_argument_call_is_refused_audited_and_counted(
    attacked: RunningSidecar, raw: RawSession, tool: str, arguments: dict[str, Any], named: str
) -> None:
    sample = f'mcp_tool_calls_total{{outcome="error",tool="{tool}"}}'
    counted = await metric(attacked, sample)
    lines = len(audit_lines(attacked))
    result = await raw.call(tool, arguments)
    message = result_text(result)
    assert result.get("isError") is True, result
    assert f"invalid arguments for {tool}" in message and named in message, message
    assert "call again" in message  # says what to do
    new = audit_lines(attacked)[lines:]
    assert [(line["tool"], line["outcome"]) for line in new] == [(tool, "error")], new
    assert await metric(attacked, sample) == counted + 1
