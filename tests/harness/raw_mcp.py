"""A raw MCP session over HTTP, for what the SDK client cannot send (``NaN`` in JSON, arguments
of the wrong type), and readers of a sidecar's audit log and metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.harness.jupyter import RunningSidecar
from tests.harness.mcp import INITIALIZE, MCP_HEADERS


def audit_lines(sidecar: RunningSidecar) -> list[dict[str, Any]]:
    log = Path(sidecar.app.state.tools.guard.settings.audit_log)  # type: ignore[attr-defined]
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def metric(sidecar: RunningSidecar, sample: str) -> float:
    """The value of one exposition line of /metrics (0 when absent)."""
    async with httpx.AsyncClient(timeout=30) as http:
        body = (await http.get(f"{sidecar.base}/metrics")).text
    return next((float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(sample)), 0.0)


@dataclass
class RawSession:
    """An initialized MCP session driven with hand-written JSON (json.dumps writes NaN/Infinity)."""

    sidecar: RunningSidecar
    session_id: str
    headers: dict[str, str]

    async def post(self, message: dict[str, Any]) -> httpx.Response:
        headers = {**MCP_HEADERS, **self.headers, "Mcp-Session-Id": self.session_id}
        async with httpx.AsyncClient(timeout=60) as http:
            return await http.post(self.sidecar.url, content=json.dumps(message), headers=headers)

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The JSON-RPC result of tools/call (a CallToolResult as a dict)."""
        params = {"name": tool, "arguments": arguments}
        response = await self.post({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params})
        assert response.status_code == 200, response.text
        return sse_result(response.text)


def sse_result(body: str) -> dict[str, Any]:
    """The result of the JSON-RPC response in an SSE (or plain JSON) answer."""
    payloads = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")] or [body]
    for payload in payloads:
        if not payload:
            continue
        message = json.loads(payload)
        if "result" in message or "error" in message:
            assert "result" in message, message
            return message["result"]
    raise AssertionError(f"no JSON-RPC response in {body[:500]!r}")


def result_text(result: dict[str, Any]) -> str:
    return "\n".join(part.get("text", "") for part in result.get("content") or [])


async def open_raw_session(sidecar: RunningSidecar, headers: dict[str, str] | None = None) -> RawSession:
    auth = headers or sidecar.headers
    async with httpx.AsyncClient(timeout=30) as http:
        opened = await http.post(sidecar.url, json=INITIALIZE, headers={**MCP_HEADERS, **auth})
    assert opened.status_code == 200, opened.text
    session = RawSession(sidecar, opened.headers["mcp-session-id"], auth)
    initialized = await session.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert initialized.status_code == 202, initialized.text
    return session
