"""Hub-token auth of the real sidecar app against a real JupyterHub (tokens minted by the hub API).

The sidecars run in process (uvicorn on free ports) in front of the shared real jupyter_server,
in hub mode for alice's default server and for her named server ``lab``. Every admission and
refusal below is the real hub's answer to ``GET /hub/api/user`` judged by the sidecar.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.harness.hub import RunningHub
from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import INITIALIZE, MCP_HEADERS

pytestmark = [pytest.mark.hub, pytest.mark.timeout(240)]

TTL = 2.0  # MCP_AUTH_CACHE_TTL of the sidecars here: short, so revocation is observable
WAIT = 60.0


def hub_env(hub: RunningHub, **extra: str) -> dict[str, str]:
    return {
        "MCP_TOKEN": "",  # hub mode: no static token
        "JUPYTERHUB_API_URL": hub.api_url,
        "JUPYTERHUB_USER": "alice",
        "MCP_AUTH_CACHE_TTL": str(TTL),
        **extra,
    }


@pytest.fixture(scope="session")
async def alice_sidecar(jupyter: JupyterProcess, jupyterhub: RunningHub) -> AsyncIterator[RunningSidecar]:
    async with sidecar_in_process(jupyter, **hub_env(jupyterhub)) as running:
        yield running


@pytest.fixture(scope="session")
async def alice_lab_sidecar(jupyter: JupyterProcess, jupyterhub: RunningHub) -> AsyncIterator[RunningSidecar]:
    env = hub_env(jupyterhub, JUPYTERHUB_SERVER_NAME="lab", JUPYTERHUB_ALLOW_TOKEN_IN_URL="1")
    async with sidecar_in_process(jupyter, **env) as running:
        yield running


async def initialize(
    sidecar: RunningSidecar, headers: dict[str, str] | None = None, url: str = ""
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            url or sidecar.url, json=INITIALIZE, headers={**MCP_HEADERS, **(headers or {})}
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


def assert_refused(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        # No OAuth discovery: clients that see it start an OAuth flow and drop the header.
        assert "resource_metadata" not in response.headers["www-authenticate"]
    else:
        assert "www-authenticate" not in response.headers


async def test_owner_token_reaches_own_sidecar_with_either_scheme(
    alice_sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    token, _ = jupyterhub.mint_token("alice", note="owner")
    ok = await initialize(alice_sidecar, bearer(token))
    assert ok.status_code == 200, ok.text
    assert ok.headers.get("mcp-session-id")
    token2, _ = jupyterhub.mint_token("alice", scopes=["access:servers!server=alice/"], note="narrow")
    assert (await initialize(alice_sidecar, {"Authorization": f"token {token2}"})).status_code == 200


async def test_other_users_token_is_forbidden(alice_sidecar: RunningSidecar, jupyterhub: RunningHub) -> None:
    token, _ = jupyterhub.mint_token("bob", note="bob")
    response = await initialize(alice_sidecar, bearer(token))
    assert_refused(response, 403, "bob", "access:servers!server=alice/")
    assert token not in response.text


async def test_token_without_access_scope_is_forbidden(
    alice_sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    token, _ = jupyterhub.mint_token("alice", scopes=["read:users!user=alice"], note="read only")
    assert_refused(
        await initialize(alice_sidecar, bearer(token)), 403, "needs the scope custom:mcp:read!server=alice/"
    )


async def test_mcp_token_of_another_server_is_forbidden(
    alice_sidecar: RunningSidecar, alice_lab_sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    """An MCP scope is bound to its one server: alice's `lab` token does not open her default one."""
    token, _ = jupyterhub.mint_token("alice", scopes=["custom:mcp:execute!server=alice/lab"], note="lab")
    assert (await initialize(alice_lab_sidecar, bearer(token))).status_code == 200
    assert_refused(await initialize(alice_sidecar, bearer(token)), 403, "custom:mcp:read!server=alice/")


async def test_garbage_and_missing_tokens_are_401(alice_sidecar: RunningSidecar) -> None:
    garbage = secrets.token_hex(16)
    response = await initialize(alice_sidecar, bearer(garbage))
    assert_refused(response, 401, "invalid")
    assert garbage not in response.text
    assert_refused(await initialize(alice_sidecar), 401, "missing token")
    assert_refused(await initialize(alice_sidecar, {"Authorization": "Basic abc"}), 401, "missing token")
    latin1 = {"Authorization": "Bearer \u00e9t\u00e9".encode("latin-1")}
    assert_refused(await initialize(alice_sidecar, latin1), 401, "invalid")  # type: ignore[arg-type]


async def test_expired_token_is_401(alice_sidecar: RunningSidecar, jupyterhub: RunningHub) -> None:
    token, _ = jupyterhub.mint_token("alice", expires_in=1, note="short")
    await wait_for("the hub to expire the token", lambda: _async(jupyterhub.whoami(token).status_code == 403))
    assert_refused(await initialize(alice_sidecar, bearer(token)), 401, "expired")


async def test_revoked_token_stops_working_within_the_ttl(
    alice_sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    token, token_id = jupyterhub.mint_token("alice", note="to revoke")
    assert (await initialize(alice_sidecar, bearer(token))).status_code == 200
    jupyterhub.revoke_token("alice", token_id)
    revoked_at = time.monotonic()

    async def refused() -> bool:
        return (await initialize(alice_sidecar, bearer(token))).status_code == 401

    await wait_for("the revoked token to be refused", refused, timeout=TTL + 30)
    # Not before the cached answer ran out, and not much later (loaded machine: generous bound).
    assert time.monotonic() - revoked_at <= TTL + 30


async def test_named_server_token_reaches_only_that_server(
    alice_sidecar: RunningSidecar, alice_lab_sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    lab, _ = jupyterhub.mint_token("alice", scopes=["access:servers!server=alice/lab"], note="lab")
    assert (await initialize(alice_lab_sidecar, bearer(lab))).status_code == 200
    assert_refused(await initialize(alice_sidecar, bearer(lab)), 403, "access:servers!server=alice/")
    default, _ = jupyterhub.mint_token("alice", scopes=["access:servers!server=alice/"], note="default")
    assert_refused(
        await initialize(alice_lab_sidecar, bearer(default)), 403, "access:servers!server=alice/lab"
    )
    everything, _ = jupyterhub.mint_token("alice", scopes=["access:servers!user=alice"], note="all of alice")
    assert (await initialize(alice_lab_sidecar, bearer(everything))).status_code == 200


async def test_token_in_url_only_where_allowed(
    alice_sidecar: RunningSidecar, alice_lab_sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    token, _ = jupyterhub.mint_token("alice", note="url")
    response = await initialize(alice_sidecar, url=f"{alice_sidecar.url}?token={token}")
    assert_refused(response, 401, "not accepted here")
    assert token not in response.text
    assert (
        await initialize(alice_lab_sidecar, url=f"{alice_lab_sidecar.url}?token={token}")
    ).status_code == 200


async def test_a_burst_of_calls_costs_one_hub_request(
    alice_sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    from mcp_sidecar import metrics

    token, _ = jupyterhub.mint_token("alice", note="burst")
    before_log = jupyterhub.count_requests("GET /hub/api/user ")
    before_metric = metrics.HUB_AUTH_REQUESTS._value.get()
    responses = await asyncio.gather(*(initialize(alice_sidecar, bearer(token)) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert await whoami_requests_since(jupyterhub, before_log) == 1
    assert metrics.HUB_AUTH_REQUESTS._value.get() - before_metric == 1


async def test_refusals_are_cached_too(alice_sidecar: RunningSidecar, jupyterhub: RunningHub) -> None:
    garbage = secrets.token_hex(16)
    before = jupyterhub.count_requests("GET /hub/api/user ")
    for _ in range(3):
        assert (await initialize(alice_sidecar, bearer(garbage))).status_code == 401
    assert await whoami_requests_since(jupyterhub, before) == 1


async def whoami_requests_since(hub: RunningHub, before: int) -> int:
    """``GET /hub/api/user`` requests the hub logged since ``before`` (after all earlier ones landed)."""
    # The hub logs requests in order: once a later marker request is logged, the earlier ones are too.
    marker = uuid.uuid4().hex
    hub.api("GET", f"/?marker={marker}")
    await wait_for("the hub's request log", lambda: _async(hub.count_requests(marker) > 0))
    return hub.count_requests("GET /hub/api/user ") - before


async def test_hub_outage_is_503_then_recovers(alice_sidecar: RunningSidecar, jupyterhub: RunningHub) -> None:
    token, _ = jupyterhub.mint_token("alice", note="outage")
    with jupyterhub.outage():
        for _ in range(2):  # not cached as a refusal, not an open door
            response = await initialize(alice_sidecar, bearer(token))
            assert response.status_code == 503, response.text
            assert "unreachable" in response.json()["error"]
            assert response.headers["retry-after"]
            assert token not in response.text
    # The same token right after recovery: the outage left no negative answer in the cache.
    assert (await initialize(alice_sidecar, bearer(token))).status_code == 200


async def test_a_wrong_hub_api_url_is_503_not_a_cached_refusal(
    jupyter: JupyterProcess, jupyterhub: RunningHub
) -> None:
    """The real hub answers 404 under a wrong JUPYTERHUB_API_URL path: that is not a verdict on
    the token (401 would tell the agent its good token is bad, and be cached), it is a 503."""
    from mcp_sidecar import metrics

    token, _ = jupyterhub.mint_token("alice", note="wrong api url")
    env = hub_env(jupyterhub, JUPYTERHUB_API_URL=jupyterhub.api_url + "/no-such-path")
    async with sidecar_in_process(jupyter, **env) as misconfigured:
        before = metrics.HUB_AUTH_REQUESTS._value.get()
        for _ in range(2):
            response = await initialize(misconfigured, bearer(token))
            assert response.status_code == 503, response.text
            message = response.json()["error"]
            assert "answered 404" in message and "JUPYTERHUB_API_URL" in message
            assert response.headers["retry-after"] and token not in response.text
        assert metrics.HUB_AUTH_REQUESTS._value.get() - before == 2, "a 404 is never cached"


async def test_metrics_count_auth_failures(alice_sidecar: RunningSidecar) -> None:
    await initialize(alice_sidecar, bearer("not-a-real-token"))
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{alice_sidecar.base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'mcp_auth_failures_total{reason="invalid"}' in response.text
    assert "mcp_hub_auth_requests_total" in response.text


async def _async(value: Any) -> Any:
    return value


async def test_what_the_mcp_layer_sees_after_auth(jupyterhub: RunningHub) -> None:
    """Behind the middleware: ``Bearer`` header only, no token in the query, the Identity in state."""
    from mcp_sidecar.auth import AuthMiddleware
    from mcp_sidecar.config import Settings

    seen: dict[str, Any] = {}

    async def inner(scope: dict, receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    settings = Settings.from_env({**hub_env(jupyterhub), "JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1"})
    middleware = AuthMiddleware(inner, settings)
    token, token_id = jupyterhub.mint_token("alice", note="inner")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=middleware), base_url="http://s"
        ) as http:
            response = await http.post("/user/alice/mcp", headers={"Authorization": f"token {token}"})
            assert response.status_code == 204
            assert [v for k, v in seen["headers"] if k == b"authorization"] == [f"Bearer {token}".encode()]
            identity = seen["state"]["identity"]
            assert (identity.user, identity.kind, identity.token_id) == ("alice", "hub", token_id)
            assert "access:servers!user=alice" in identity.scopes

            seen.clear()
            response = await http.post(f"/user/alice/mcp?a=1&token={token}&b=2")
            assert response.status_code == 204
            assert seen["query_string"] == b"a=1&b=2"
    finally:
        await middleware.aclose()


@pytest.fixture(scope="session")
async def dotted_sidecar(jupyter: JupyterProcess, jupyterhub: RunningHub) -> AsyncIterator[RunningSidecar]:
    async with sidecar_in_process(jupyter, **hub_env(jupyterhub, JUPYTERHUB_USER="a.b@x.org")) as running:
        yield running


async def test_user_name_with_dots_and_at(dotted_sidecar: RunningSidecar, jupyterhub: RunningHub) -> None:
    own, _ = jupyterhub.mint_token("a.b@x.org", scopes=["access:servers!server=a.b@x.org/"], note="dotted")
    assert (await initialize(dotted_sidecar, bearer(own))).status_code == 200
    alice, _ = jupyterhub.mint_token("alice", note="not dotted")
    assert_refused(await initialize(dotted_sidecar, bearer(alice)), 403, "access:servers!server=a.b@x.org/")


async def test_no_oauth_metadata_is_advertised(alice_sidecar: RunningSidecar) -> None:
    async with httpx.AsyncClient(base_url=alice_sidecar.base, timeout=30) as http:
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-authorization-server"):
            assert (await http.get(path)).status_code == 404


async def test_a_session_is_usable_only_by_the_caller_who_opened_it(
    alice_sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    alice, _ = jupyterhub.mint_token("alice", scopes=["access:servers!server=alice/"], note="session-owner")
    opened = await initialize(alice_sidecar, bearer(alice))
    assert opened.status_code == 200, opened.text
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
    list_tools = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}

    async def post(token: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as http:
            headers = {**MCP_HEADERS, **bearer(token), **session}
            return await http.post(alice_sidecar.url, json=list_tools, headers=headers)

    # alice-helper is admitted to alice's server (its own session works) ...
    assert (await initialize(alice_sidecar, bearer(jupyterhub.helper_token))).status_code == 200
    # ... but cannot drive alice's session, while alice (even with a second token) still can.
    assert_refused(await post(jupyterhub.helper_token), 404, "belongs to another caller")
    again, _ = jupyterhub.mint_token("alice", scopes=["access:servers!server=alice/"], note="rotated")
    assert (await post(again)).status_code == 200
