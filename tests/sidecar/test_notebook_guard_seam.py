"""The seam to policy/audit (guard.py): every tool call, refused or not, is described to Guard.call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp_sidecar.guard import Guard, ToolCall

from tests.harness.jupyter import JupyterProcess, sidecar_in_process
from tests.harness.mcp import call, fails, held_client
from tests.harness.notebooks import unique


class RecordingGuard(Guard):
    """The real Guard, recording what it was told and how each call ended."""

    calls: list[tuple[ToolCall, str]]

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.calls = []

    async def call(self, call: ToolCall, body: Callable[[], Awaitable[Any]]) -> Any:
        try:
            result = await super().call(call, body)
        except Exception as exc:
            self.calls.append((call, f"error: {exc}"))
            raise
        self.calls.append((call, "ok"))
        return result


async def test_every_call_is_described_to_the_guard(jupyter: JupyterProcess) -> None:
    async with sidecar_in_process(jupyter, guard=RecordingGuard) as sidecar:
        guard: RecordingGuard = sidecar.app.state.tools.guard
        path = unique("guarded")
        async with held_client(sidecar.url, sidecar.token) as client:
            await call(client, "create_notebook", path=path)
            await call(client, "open_notebook", path=path)
            inserted = await call(client, "insert_cell", source="print(1)")  # path from the session
            await call(client, "execute_cell", cell=inserted.structured_content["cell_id"])
            await fails(client, "read_notebook", path="../escape.ipynb")
            await fails(client, "execute_cell", path=path, cell=0, timeout=-1)
        seen = {(c.tool, outcome.split(":")[0]) for c, outcome in guard.calls}
        assert {("create_notebook", "ok"), ("insert_cell", "ok"), ("execute_cell", "ok")} <= seen
        assert ("read_notebook", "error") in seen and ("execute_cell", "error") in seen
        by_tool = {c.tool: c for c, outcome in guard.calls if outcome == "ok"}
        assert by_tool["insert_cell"].path == path, "the session's default notebook is what gets audited"
        assert by_tool["insert_cell"].code == "print(1)"
        assert by_tool["execute_cell"].cells == [inserted.structured_content["cell_id"]]
        assert by_tool["insert_cell"].session_id, "legacy clients have an Mcp-Session-Id"
        assert (
            by_tool["insert_cell"].identity is not None and by_tool["insert_cell"].identity.kind == "static"
        )
        refused = next(c for c, outcome in guard.calls if c.tool == "read_notebook")
        assert refused.path == "../escape.ipynb"
