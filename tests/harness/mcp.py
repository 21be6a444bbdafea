"""MCP clients nobody here wrote: the official SDK over real Streamable HTTP (with the Authorization
header), and ``mcp-remote`` (npm) over stdio; plus the call helpers the tests share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import CallToolResult

from tests.harness.paths import REPO

# A raw initialize request, for tests that look at HTTP status codes (the SDK client hides them).
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-http-test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def mcp_client(url: str, token: str, *, legacy: bool = True) -> AsyncIterator[Client]:
    """``legacy`` uses the initialize handshake, which gives the client an Mcp-Session-Id."""
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        async with mcp_client_over(http, url, legacy=legacy) as client:
            yield client


@contextlib.asynccontextmanager
async def mcp_client_over(http: Any, url: str, *, legacy: bool = True) -> AsyncIterator[Client]:
    """The SDK client on the caller's open HTTP client (its headers, transport, TLS)."""
    transport = streamable_http_client(url, http_client=http)
    async with Client(transport, mode="legacy" if legacy else "auto") as client:
        yield client


def text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def call(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    """A tool call that must succeed."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool}({arguments}) failed: {text(result)}"
    return result


async def fails(client: Client, tool: str, **arguments: Any) -> str:
    """A tool call that must fail with a tool error; returns its message."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool}({arguments}) should have failed but returned: {text(result)}"
    return text(result)


@contextlib.asynccontextmanager
async def held_client(url: str, token: str, *, legacy: bool = True) -> AsyncIterator[Client]:
    """``mcp_client`` entered and exited in one task of its own.

    The client's anyio cancel scopes must exit in the task that entered them, and pytest-asyncio
    runs a fixture's setup and teardown in different tasks; calls from any task are fine.
    """
    ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def hold() -> None:
        try:
            async with mcp_client(url, token, legacy=legacy) as client:
                ready.set_result(client)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    task = asyncio.create_task(hold())
    try:
        yield await ready
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def mcp_remote_client(server: Mapping[str, Any], workdir: Path) -> AsyncIterator[Client]:
    """A stdio MCP client running one ``mcpServers`` entry exactly as handed to the user (for the
    demo and the token Secret alike: ``npx -y mcp-remote <url> --header Authorization:${AUTH_HEADER}``
    with the token in ``env``), the way a desktop MCP host would start it. From the repository, npx
    finds the ``mcp-remote`` the lockfile pinned instead of fetching one."""
    params = StdioServerParameters(
        command=server["command"],
        args=list(server["args"]),
        env={
            **server.get("env", {}),
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(workdir),
            # mcp-remote keeps OAuth state in ~/.mcp-auth; a test keeps it in its own dir.
            "MCP_REMOTE_CONFIG_DIR": str(workdir),
            "npm_config_offline": "true",  # never fetch: the pinned package or a clear failure
        },
        cwd=str(REPO),
    )
    with (workdir / "mcp-remote.log").open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            yield client


@dataclass
class IdleStream:
    pings: list[float]  # seconds after the stream opened at which a `: ping` comment arrived
    closed_after: float | None  # when the stream ended (None: still open when we stopped)


async def idle_stream(http: Any, url: str, seconds: float) -> IdleStream:
    """Open an MCP session through ``http`` (its headers carry the token), open the server's GET
    event stream and leave it idle for ``seconds``: what the path in between (CHP, an ingress
    controller, a gateway) does to a stream on which nothing but the SDK's keep-alive comments
    (every 15 s) flows."""
    opened = await http.post(url, json=INITIALIZE, headers=MCP_HEADERS)
    assert opened.status_code == 200, opened.text
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-06-18"}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await http.post(url, json=note, headers={**MCP_HEADERS, **session})).status_code == 202
    pings: list[float] = []
    start = time.monotonic()
    closed: float | None = None
    headers = {"Accept": "text/event-stream", **session}
    async with http.stream("GET", url, headers=headers, timeout=seconds + 30) as stream:
        assert stream.status_code == 200, (await stream.aread())[:500]
        lines = stream.aiter_lines()
        while (left := start + seconds - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(anext(lines), left)
            except TimeoutError:
                break
            except StopAsyncIteration:
                closed = time.monotonic() - start
                break
            if line.startswith(": ping"):
                pings.append(time.monotonic() - start)
    await http.request("DELETE", url, headers=session)
    return IdleStream(pings, closed)
