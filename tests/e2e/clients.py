"""MCP clients nobody here wrote: the official SDK over Streamable HTTP, and mcp-remote over stdio."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.fixtures.tools import NODE_BIN
from tests.sidecar.mcpclient import held_client, mcp_client

__all__ = ["held_client", "mcp_client", "mcp_remote_client"]


@contextlib.asynccontextmanager
async def mcp_remote_client(url: str, token: str, workdir: Path) -> AsyncIterator[Client]:
    """A stdio MCP client talking to ``mcp-remote``, which bridges to the HTTP endpoint with the
    Authorization header, exactly as a desktop MCP host would run it."""
    params = StdioServerParameters(
        command=str(NODE_BIN / "mcp-remote"),
        args=[url, "--header", f"Authorization:Bearer {token}"],
        # mcp-remote keeps OAuth state in ~/.mcp-auth; a test keeps it in its own dir.
        env={"MCP_REMOTE_CONFIG_DIR": str(workdir), "PATH": os.environ.get("PATH", "")},
    )
    with (workdir / "mcp-remote.log").open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            yield client
