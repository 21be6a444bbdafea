"""Session binding does not fail open (issue 15 §2), against the real sidecar in hub mode (in
process, in front of the real jupyter_server) and the real JupyterHub: two identities admitted to
alice's server, alice's own token and ``alice-helper`` (a service holding access:servers on it).

The attack: the sidecar remembered at most 10 000 session owners, never forgot an ended session and
admitted a session id it had no owner for. alice-helper opened and deleted 10 001 sessions of its
own, which pushed alice's owner out, then drove alice's live session (200).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.harness.hub import RunningHub
from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import INITIALIZE, MCP_HEADERS

pytestmark = [pytest.mark.hub, pytest.mark.timeout(900)]

CYCLES = 10_001  # one more than the owners the old sidecar remembered
LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
UNKNOWN = "unknown or expired session: initialize a new session"


@pytest.fixture(scope="module")
async def sidecar(jupyter: JupyterProcess, jupyterhub: RunningHub) -> AsyncIterator[RunningSidecar]:
    env = {"MCP_TOKEN": "", "JUPYTERHUB_API_URL": jupyterhub.api_url, "JUPYTERHUB_USER": "alice"}
    async with sidecar_in_process(jupyter, **env) as running:
        yield running


@pytest.fixture(scope="module")
def alice(jupyterhub: RunningHub) -> str:
    token, _ = jupyterhub.mint_token("alice", scopes=["access:servers!server=alice/"], note="binding")
    return token


def owners(sidecar: RunningSidecar) -> int:
    """How many session owners the sidecar remembers."""
    return len(sidecar.app.state.session_owners)  # type: ignore[attr-defined]


def auth(token: str, session_id: str | None = None) -> dict[str, str]:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    return {**headers, "Mcp-Session-Id": session_id} if session_id else headers


async def open_session(http: httpx.AsyncClient, sidecar: RunningSidecar, token: str) -> str:
    opened = await http.post(sidecar.url, json=INITIALIZE, headers=auth(token))
    assert opened.status_code == 200, opened.text
    return opened.headers["mcp-session-id"]


async def use(
    http: httpx.AsyncClient, sidecar: RunningSidecar, token: str, session_id: str
) -> httpx.Response:
    return await http.post(sidecar.url, json=LIST_TOOLS, headers=auth(token, session_id))


def assert_unknown_session(response: httpx.Response) -> None:
    """404 with a JSON-RPC error saying what to do (what MCP clients re-initialize on)."""
    assert response.status_code == 404, response.text
    body: dict[str, Any] = response.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["message"] == UNKNOWN, body


async def test_a_deleted_session_and_an_unknown_one_answer_404(sidecar: RunningSidecar, alice: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        before = owners(sidecar)
        session_id = await open_session(http, sidecar, alice)
        assert (await use(http, sidecar, alice, session_id)).status_code == 200
        assert owners(sidecar) == before + 1
        deleted = await http.delete(sidecar.url, headers=auth(alice, session_id))
        assert deleted.status_code == 200, deleted.text
        assert owners(sidecar) == before  # the owner went with the session
        assert_unknown_session(await use(http, sidecar, alice, session_id))
        assert_unknown_session(await use(http, sidecar, alice, "f" * 32))


async def test_a_refused_opening_leaves_no_owner(sidecar: RunningSidecar, alice: str) -> None:
    """An opening POST the SDK refuses (400 parse error, which still names the session it tried)
    was recorded as owned all the same, one more entry that never went away."""
    async with httpx.AsyncClient(timeout=30) as http:
        before = owners(sidecar)
        for _ in range(20):
            refused = await http.post(sidecar.url, content=b"{not json", headers=auth(alice))
            assert refused.status_code == 400 and refused.headers.get("mcp-session-id"), refused.text
        assert owners(sidecar) == before


async def test_10001_open_and_delete_cycles_do_not_unbind_a_live_session(
    sidecar: RunningSidecar, jupyterhub: RunningHub, alice: str
) -> None:
    helper = jupyterhub.helper_token
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        victim = await open_session(http, sidecar, alice)
        before = owners(sidecar)

        async def cycles(count: int) -> None:
            for _ in range(count):
                session_id = await open_session(http, sidecar, helper)
                deleted = await http.delete(sidecar.url, headers=auth(helper, session_id))
                assert deleted.status_code == 200, deleted.text

        await asyncio.gather(*(cycles(n) for n in (CYCLES // 4 + CYCLES % 4, *[CYCLES // 4] * 3)))
        # alice's session is still hers: the helper is refused (it was served, 200), alice is served.
        refused = await use(http, sidecar, helper, victim)
        assert refused.status_code == 404 and "belongs to another caller" in refused.text, refused.text
        assert (await use(http, sidecar, alice, victim)).status_code == 200
        # Every ended session took its owner along (the old map held 10 000, its limit).
        assert owners(sidecar) == before
