"""Hub answers a real JupyterHub cannot be made to give on demand (500, garbage, a hang), through
httpx.MockTransport as a stand-in for the hub. Everything a real hub does answer is tested against one
in tests/sidecar/test_auth_hub.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from mcp_sidecar.auth import HubTokenChecker
from mcp_sidecar.config import Settings

ENV = {
    "JUPYTERHUB_API_URL": "http://hub.test/hub/api",
    "JUPYTERHUB_USER": "alice",
    "MCP_AUTH_CACHE_TTL": "30",
}
SETTINGS = Settings.from_env(ENV)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def checker(
    handler, clock: Clock | None = None, settings: Settings = SETTINGS
) -> tuple[HubTokenChecker, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return HubTokenChecker(settings, clock=clock or Clock(), transport=httpx.MockTransport(record)), seen


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        (httpx.Response(500, text="boom"), "answered 500"),
        (httpx.Response(502), "answered 502"),
        (httpx.Response(429), "answered 429"),
        (httpx.Response(404, text="<html>not found</html>"), "answered 404"),
        (httpx.Response(200, text="<html>"), "not JSON"),
        (httpx.Response(200, json=["a"]), "unexpected document"),
    ],
)
async def test_hub_trouble_is_503_and_never_cached(response: httpx.Response, fragment: str) -> None:
    hub, seen = checker(lambda request: response)
    for _ in range(2):
        verdict = await hub.check("tok-secret")
        assert verdict.status == 503 and fragment in verdict.message and "tok-secret" not in verdict.message
    assert len(seen) == 2
    await hub.aclose()


async def test_slow_hub_is_503() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    hub, _ = checker(hang)
    verdict = await hub.check("tok")
    assert verdict.status == 503 and "unreachable (ReadTimeout)" in verdict.message


async def test_answers_expire_after_the_ttl_and_the_token_is_sent_as_token_header() -> None:
    clock = Clock()
    hub, seen = checker(
        lambda r: httpx.Response(200, json={"name": "alice", "scopes": ["access:servers"]}), clock
    )
    assert (await hub.check("tok")).status == 200
    clock.now = 29.9
    assert (await hub.check("tok")).status == 200
    assert len(seen) == 1
    clock.now = 30.1
    assert (await hub.check("tok")).status == 200
    assert len(seen) == 2
    assert seen[0].headers["authorization"] == "token tok"
    assert str(seen[0].url) == "http://hub.test/hub/api/user"


async def test_a_caller_that_hangs_up_does_not_cancel_the_shared_lookup() -> None:
    release = asyncio.Event()
    hub, seen = checker(lambda r: httpx.Response(200, json={"name": "alice", "scopes": ["access:servers"]}))
    original = hub._whoami

    async def gated(token: str):
        await release.wait()
        return await original(token)

    hub._whoami = gated  # type: ignore[method-assign]
    first = asyncio.create_task(hub.check("tok"))
    second = asyncio.create_task(hub.check("tok"))
    await asyncio.sleep(0)  # one loop turn: both callers are now waiting on the one lookup
    first.cancel()
    release.set()
    assert (await second).status == 200
    assert len(seen) == 1


async def test_a_flood_of_distinct_garbage_tokens_keeps_the_cache_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stand-in hub for volume: thousands of distinct tokens within one TTL (a real hub would say 403).
    monkeypatch.setattr("mcp_sidecar.auth.CACHE_MAX_ENTRIES", 50)
    unlimited = Settings.from_env({**ENV, "MCP_HUB_LOOKUP_BURST": "1000"})  # the limit: next test
    hub, seen = checker(lambda r: httpx.Response(403), settings=unlimited)
    for i in range(500):
        assert (await hub.check(f"garbage-{i}")).status == 401
    assert len(hub._cache) <= 51
    # The newest answers survive the trim: a repeat of the last token costs no hub request.
    before = len(seen)
    assert (await hub.check("garbage-499")).status == 401
    assert len(seen) == before
    await hub.aclose()


async def test_look_ups_of_unseen_tokens_are_rate_limited_and_an_admitted_token_is_exempt() -> None:
    clock = Clock()
    limited = Settings.from_env({**ENV, "MCP_HUB_LOOKUPS_PER_SECOND": "2", "MCP_HUB_LOOKUP_BURST": "5"})

    def hub_answer(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "token alice-token":
            return httpx.Response(200, json={"name": "alice", "scopes": ["access:servers!user=alice"]})
        return httpx.Response(403)

    hub, seen = checker(hub_answer, clock, limited)
    assert (await hub.check("alice-token")).status == 200
    answers = [await hub.check(f"garbage-{i}") for i in range(100)]
    assert len(seen) == 5  # the burst: alice's look-up and four garbage ones
    assert [a.status for a in answers[:4]] == [401] * 4
    assert {(a.status, a.reason) for a in answers[4:]} == {(503, "rate_limited")}  # never a false 401
    clock.now = 31.0  # alice's cached answer ran out; the bucket refilled, then the flood drains it
    for i in range(100, 200):
        await hub.check(f"garbage-{i}")
    assert (await hub.check("alice-token")).status == 200  # asked again, not limited
    clock.now = 31.5  # half a second at 2 a second: one more unseen token gets through
    assert (await hub.check("garbage-x")).status == 401
    assert (await hub.check("garbage-y")).reason == "rate_limited"
    await hub.aclose()


def test_cache_lifetime_never_outlives_the_token() -> None:
    from datetime import UTC, datetime, timedelta

    from mcp_sidecar.auth import cache_lifetime, parse_expiry

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert cache_lifetime(30.0, None, now) == 30.0  # never expires (or unknown): the TTL
    assert cache_lifetime(30.0, now + timedelta(seconds=5), now) == 5.0
    assert cache_lifetime(30.0, now + timedelta(hours=1), now) == 30.0
    assert cache_lifetime(30.0, now - timedelta(seconds=1), now) == 0.0  # not cached at all
    assert parse_expiry("2026-01-01T00:00:05.123456Z") == now + timedelta(seconds=5.123456)
    assert parse_expiry(None) is None and parse_expiry("garbage") is None
