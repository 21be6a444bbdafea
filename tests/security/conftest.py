"""Fixtures of the attack tests: the real sidecar app (in process) in front of the shared real
jupyter_server with collaboration, its audit log in a file, and a raw MCP session for what the SDK
client cannot send (``NaN`` in JSON, arguments of the wrong type).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import held_client
from tests.harness.raw_mcp import RawSession, open_raw_session

MAX_TIMEOUT = 5  # MCP_EXEC_MAX_TIMEOUT of the attacked sidecar: what a NaN timeout would defeat


@pytest.fixture(scope="session")
async def attacked(
    jupyter: JupyterProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSidecar]:
    audit = tmp_path_factory.mktemp("security-audit") / "audit.jsonl"
    env = {"MCP_AUDIT_LOG": str(audit), "MCP_EXEC_TIMEOUT": "3", "MCP_EXEC_MAX_TIMEOUT": str(MAX_TIMEOUT)}
    async with sidecar_in_process(jupyter, **env) as running:
        yield running


@pytest.fixture(scope="session")
async def attacked_client(attacked: RunningSidecar):
    async with held_client(attacked.url, attacked.token) as client:
        yield client


@pytest.fixture
async def raw(attacked: RunningSidecar) -> RawSession:
    return await open_raw_session(attacked)
