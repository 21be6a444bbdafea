"""MCP clients nobody here wrote: the official SDK over Streamable HTTP, and mcp-remote over stdio."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.fixtures.tools import REPO
from tests.sidecar.mcpclient import held_client, mcp_client

__all__ = ["held_client", "mcp_client", "mcp_remote_client"]


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
