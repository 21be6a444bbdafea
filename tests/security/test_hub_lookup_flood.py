"""Garbage tokens do not amplify into hub requests (issue 15 §2, cheap amplification), against the
real sidecar (in process, hub mode) and the real JupyterHub, whose request log is the count.

Before: each of 3 000 distinct garbage tokens cost one ``GET /hub/api/user``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.harness.hub import RunningHub
from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import INITIALIZE, MCP_HEADERS

pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]

GARBAGE = 3000
RATE, BURST = 10, 20  # the sidecar's defaults (MCP_HUB_LOOKUPS_PER_SECOND, MCP_HUB_LOOKUP_BURST)
HUB_LOOKUP = "GET /hub/api/user "


@pytest.fixture(scope="module")
async def sidecar(jupyter: JupyterProcess, jupyterhub: RunningHub) -> AsyncIterator[RunningSidecar]:
    env = {
        "MCP_TOKEN": "",
        "JUPYTERHUB_API_URL": jupyterhub.api_url,
        "JUPYTERHUB_USER": "alice",
        "MCP_AUTH_CACHE_TTL": "1",  # alice's cached answer runs out during the flood
    }
    async with sidecar_in_process(jupyter, **env) as running:
        yield running


async def settled_count(hub: RunningHub) -> int:
    """The hub's count of token look-ups once its log stops growing."""
    count = hub.count_requests(HUB_LOOKUP)
    while True:
        await asyncio.sleep(1.0)
        now = hub.count_requests(HUB_LOOKUP)
        if now == count:
            return count
        count = now


async def test_3000_garbage_tokens_do_not_make_3000_hub_requests(
    sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    alice, _ = jupyterhub.mint_token("alice", scopes=["access:servers!server=alice/"], note="flood")
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def initialize(token: str) -> httpx.Response:
            headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
            return await http.post(sidecar.url, json=INITIALIZE, headers=headers)

        assert (await initialize(alice)).status_code == 200
        before = await settled_count(jupyterhub)
        statuses: Counter[int] = Counter()
        pending = [f"garbage-{secrets.token_hex(16)}" for _ in range(GARBAGE)]
        started = time.monotonic()

        async def flood() -> None:
            while pending:
                response = await initialize(pending.pop())
                statuses[response.status_code] += 1
                if response.status_code == 503:
                    assert response.headers["retry-after"].isdigit(), response.headers
                    assert "rate-limiting" in response.json()["error"], response.text

        async def alice_meanwhile() -> None:
            await asyncio.sleep(1.5)  # past her cached answer's lifetime
            assert (await initialize(alice)).status_code == 200  # asked again, never limited

        await asyncio.gather(*(flood() for _ in range(16)), alice_meanwhile())
        elapsed = time.monotonic() - started

    lookups = await settled_count(jupyterhub) - before
    assert set(statuses) <= {401, 503} and sum(statuses.values()) == GARBAGE, statuses
    # Within the bucket: its burst, its rate over the flood, alice's own look-up and some slack.
    assert lookups <= BURST + RATE * elapsed + 5, (lookups, elapsed, statuses)
    assert lookups < GARBAGE / 4, (lookups, statuses)
    # Every 401 is the hub's own answer; the rest are 503s that say why, never a false 401.
    assert statuses[401] <= lookups, (lookups, statuses)
