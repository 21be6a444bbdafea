"""Tool policy, audit lines and metrics of the real sidecar, through the official MCP client over real
HTTP against the real jupyter_server (+ collaboration, + ipykernel). Static-token sidecars: the hub
plays no part here (hub auth is in test_auth_hub.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_sidecar.toolpolicy import READ_TOOLS

from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import call, fails, mcp_client
from tests.harness.notebooks import unique

pytestmark = pytest.mark.timeout(180)

AUDIT_KEYS = {
    "ts",
    "user",
    "auth",
    "token_id",
    "token_note",
    "session",
    "tool",
    "path",
    "cells",
    "outcome",
    "error",
    "duration_ms",
}


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="session")
def audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit")


@pytest.fixture(scope="session")
async def read_only_sidecar(jupyter: JupyterProcess, audit_dir: Path) -> AsyncIterator[RunningSidecar]:
    env = {
        "MCP_MODE": "read-only",
        "MCP_AUDIT_LOG": str(audit_dir / "read-only.jsonl"),
        "JUPYTERHUB_USER": "alice",
    }
    async with sidecar_in_process(jupyter, **env) as running:
        yield running


@pytest.fixture(scope="session")
async def audited_sidecar(jupyter: JupyterProcess, audit_dir: Path) -> AsyncIterator[RunningSidecar]:
    env = {
        "MCP_AUDIT_LOG": str(audit_dir / "with-code.jsonl"),
        "MCP_AUDIT_INCLUDE_CODE": "1",
        "MCP_DENY_TOOLS": "restart_kernel",
        "JUPYTERHUB_USER": "alice",
    }
    async with sidecar_in_process(jupyter, **env) as running:
        yield running


async def scrape(sidecar: RunningSidecar) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        return (await http.get(f"{sidecar.base}/metrics")).text


async def test_read_only_lists_only_read_tools_and_refuses_the_rest(
    read_only_sidecar: RunningSidecar,
) -> None:
    log = Path(read_only_sidecar.app.state.tools.guard.settings.audit_log)  # type: ignore[attr-defined]
    refused = 'mcp_tool_calls_total{outcome="refused",tool="execute_code"}'
    counted = _sample(await scrape(read_only_sidecar), refused)
    async with mcp_client(read_only_sidecar.url, read_only_sidecar.token) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert listed == READ_TOOLS
        await call(client, "list_files")
        # Not listed, called anyway: the policy's refusal with the reason, not "Unknown tool".
        message = await fails(client, "execute_code", code="import os", path="a.ipynb")
        assert "tool execute_code is not allowed: the sidecar runs in read-only mode" in message
        # Refused whatever the arguments (none here), before they are even validated.
        assert "read-only mode" in await fails(client, "insert_cell")
        # A name that is no tool at all stays the SDK's answer.
        assert "Unknown tool" in await fails(client, "no_such_tool")
    lines = audit_lines(log)
    assert [(r["tool"], r["outcome"]) for r in lines[-3:]] == [
        ("list_files", "ok"),
        ("execute_code", "refused"),
        ("insert_cell", "refused"),
    ]
    record = lines[-2]
    assert "read-only mode" in record["error"] and record["path"] == "a.ipynb"
    assert record["user"] == "alice" and record["session"]
    assert "code" not in record  # MCP_AUDIT_INCLUDE_CODE is off here
    assert _sample(await scrape(read_only_sidecar), refused) == counted + 1


async def test_deny_list_hides_a_tool_and_refuses_a_call_to_it(audited_sidecar: RunningSidecar) -> None:
    log = Path(audited_sidecar.app.state.tools.guard.settings.audit_log)  # type: ignore[attr-defined]
    async with mcp_client(audited_sidecar.url, audited_sidecar.token) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert "restart_kernel" not in listed
        assert {"execute_code", "insert_cell", "read_notebook"} <= listed
        message = await fails(client, "restart_kernel", path="b.ipynb")
    assert "tool restart_kernel is not allowed: it is on this server's deny list" in message
    record = audit_lines(log)[-1]
    assert (record["tool"], record["outcome"], record["path"]) == ("restart_kernel", "refused", "b.ipynb")


async def test_one_well_formed_audit_line_per_call_with_code_when_asked(
    audited_sidecar: RunningSidecar,
) -> None:
    log = Path(audited_sidecar.app.state.tools.guard.settings.audit_log)  # type: ignore[attr-defined]
    before = len(audit_lines(log))
    path = unique("audited")
    async with mcp_client(audited_sidecar.url, audited_sidecar.token) as client:
        await call(client, "create_notebook", path=path)
        ran = await call(client, "insert_and_execute", path=path, source="print(6 * 7)")
        await call(client, "read_cell", path=path, cell=0)
        await fails(client, "read_notebook", path="does/not/exist.ipynb")
    lines = audit_lines(log)[before:]
    assert [(r["tool"], r["outcome"]) for r in lines] == [
        ("create_notebook", "ok"),
        ("insert_and_execute", "ok"),
        ("read_cell", "ok"),
        ("read_notebook", "error"),
    ]
    for record in lines:
        assert AUDIT_KEYS <= set(record), record
        assert record["user"] == "alice" and record["auth"] == "static"
        assert record["session"]  # the legacy client holds an Mcp-Session-Id
        assert record["ts"].endswith("Z") and isinstance(record["duration_ms"], int | float)
        assert record["duration_ms"] >= 0
    assert lines[0]["path"] == path and lines[0]["error"] is None
    assert lines[1]["code"] == "print(6 * 7)"
    # Cell ids, not the caller's references: the new cell's id, and what index 0 resolved to.
    cell_id = ran.structured_content["cell_id"]
    assert lines[0]["cells"] == [] and lines[1]["cells"] == [cell_id] and lines[2]["cells"] == [cell_id]
    assert "does/not/exist.ipynb" in lines[3]["error"]
    assert len({r["session"] for r in lines}) == 1


async def test_metrics_expose_tool_calls_and_latency(audited_sidecar: RunningSidecar) -> None:
    async with mcp_client(audited_sidecar.url, audited_sidecar.token) as client:
        await call(client, "list_files")
    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(f"{audited_sidecar.base}/metrics")).text
    assert 'mcp_tool_calls_total{outcome="ok",tool="list_files"}' in text
    assert 'mcp_tool_duration_seconds_bucket{le="0.005",tool="list_files"}' in text
    for family in ("mcp_auth_failures_total", "mcp_kernel_executions_total", "mcp_output_truncations_total"):
        assert f"# TYPE {family} counter" in text


def _sample(text: str, prefix: str) -> float:
    """The value of the first exposition line starting with prefix (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_executions_and_truncations(audited_sidecar: RunningSidecar) -> None:
    async def scrape() -> str:
        async with httpx.AsyncClient(timeout=30) as http:
            return (await http.get(f"{audited_sidecar.base}/metrics")).text

    ok, cut = 'mcp_kernel_executions_total{outcome="ok"}', 'mcp_output_truncations_total{kind="text"}'
    before = await scrape()
    async with mcp_client(audited_sidecar.url, audited_sidecar.token) as client:
        path = unique("metrics")
        await call(client, "create_notebook", path=path)
        await call(client, "execute_code", code="print('x' * 100_000)", path=path)
    after = await scrape()
    assert _sample(after, ok) == _sample(before, ok) + 1
    assert _sample(after, cut) == _sample(before, cut) + 1
