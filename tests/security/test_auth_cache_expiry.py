"""An expired token is not admitted on a cached answer (issue 15: "Auth cache outlives expiry":
admitted 10 s after it expired, cached 30 s), against the real hub and sidecar.

The sidecar reads an admitted token's ``expires_at`` with its own hub token (holding
``read:tokens`` on the user) and caches the answer no longer than that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from mcp_operator import endpoint

from tests.harness.hub import RunningHub
from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import INITIALIZE, MCP_HEADERS

pytestmark = [pytest.mark.hub, pytest.mark.timeout(240)]

TTL = 120.0  # far longer than the token lives: only its expiry can end the cached answer
LIFETIME = 5  # seconds the MCP token lives


@pytest.fixture(scope="module")
async def sidecar(jupyter: JupyterProcess, jupyterhub: RunningHub) -> AsyncIterator[RunningSidecar]:
    own, _ = jupyterhub.mint_token("alice", scopes=["read:tokens!user=alice"], note="sidecar's own")
    env = {
        "MCP_TOKEN": "",
        "JUPYTERHUB_API_URL": jupyterhub.api_url,
        "JUPYTERHUB_API_TOKEN": own,
        "JUPYTERHUB_USER": "alice",
        "MCP_AUTH_CACHE_TTL": str(TTL),
    }
    async with sidecar_in_process(jupyter, **env) as running:
        yield running


async def test_cached_answer_ends_when_the_token_expires(
    sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    # Any admitted kind of token; access:servers, which the sidecar admitted before MCP scopes too.
    token, _ = jupyterhub.mint_token("alice", scopes=[endpoint.server_scope("alice")], expires_in=LIFETIME)
    async with httpx.AsyncClient(timeout=30, headers=MCP_HEADERS) as http:
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http.post(sidecar.url, json=INITIALIZE, headers=auth)).status_code == 200
        # Wait until the hub itself says the token is gone (it expired), well inside the TTL.
        deadline = time.monotonic() + 60
        while jupyterhub.whoami(token).status_code == 200:
            assert time.monotonic() < deadline, "the hub still accepts the token after 60 s"
            await asyncio.sleep(0.2)
        refused = await http.post(sidecar.url, json=INITIALIZE, headers=auth)
        assert refused.status_code == 401, refused.text
