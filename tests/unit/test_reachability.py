"""The Reachable check's pure verdict and its retry loop (the HTTP itself is the Z2JH tier's)."""

from __future__ import annotations

import httpx
import pytest
from mcp_operator.reachability import ReachabilityProbe, judge, probe_base

URL = "http://proxy-public/user/alice/mcp"


def test_only_the_sidecars_bearer_challenge_counts_as_reachable() -> None:
    assert judge(401, {"www-authenticate": 'Bearer resource_metadata="x"'}, url=URL).reachable
    assert not judge(401, {}, url=URL).reachable  # a 401 without the challenge is not ours
    assert judge(404, {}, url=URL).reason == "NotRouted"
    assert "spec.route.mode" in judge(404, {}, url=URL).message
    assert judge(503, {}, url=URL).reason == "NoBackend"
    assert judge(302, {"location": "/hub/login"}, url=URL).reason == "RoutedElsewhere"
    unanswered = judge(None, {}, url=URL, error="ConnectError")
    assert unanswered.reason == "NoAnswer" and "ConnectError" in unanswered.message


@pytest.mark.parametrize(
    ("mode", "host", "expected"),
    [
        ("proxy", None, "http://proxy-public"),
        ("proxy", "hub.example.org", "http://proxy-public"),
        ("ingress", "hub.example.org", "https://hub.example.org"),
        ("gateway", "http://hub.internal", "http://hub.internal"),
        ("ingress", None, None),
        ("none", "hub.example.org", None),
    ],
)
def test_where_the_check_asks(mode: str, host: str | None, expected: str | None) -> None:
    assert probe_base(mode, proxy_public_url="http://proxy-public/", route_host=host) == expected


def test_an_ingress_without_host_is_asked_at_the_hubs_public_url_without_its_path() -> None:
    base = probe_base(
        "ingress",
        proxy_public_url="http://proxy-public",
        route_host=None,
        hub_public_url="https://h.org/jhub/",
    )
    assert base == "https://h.org"  # the pod's prefix carries /jhub/ already


async def test_the_probe_retries_until_the_route_takes_effect() -> None:
    answers = iter([404, 404, 401])
    sleeps: list[float] = []

    async def get(url: str) -> httpx.Response:
        status = next(answers)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        return httpx.Response(status, headers=headers)

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    verdict = await ReachabilityProbe(get, sleep=sleep).check(URL)
    assert verdict.reachable and sleeps == [0.5, 1.0]


async def test_the_probe_gives_the_last_verdict_when_never_reachable() -> None:
    async def get(url: str) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async def sleep(delay: float) -> None:
        pass

    verdict = await ReachabilityProbe(get, attempts=3, sleep=sleep).check(URL)
    assert not verdict.reachable and verdict.reason == "NoAnswer"


@pytest.mark.parametrize(
    ("argv", "env", "on"),
    [
        ([], {}, True),
        ([], {"MCP_CHECK_REACHABLE": "false"}, False),
        (["--check-reachable"], {"MCP_CHECK_REACHABLE": "false"}, True),
        (["--no-check-reachable"], {}, False),
    ],
)
def test_the_check_is_on_unless_turned_off(argv: list[str], env: dict[str, str], on: bool) -> None:
    from mcp_operator.config import OperatorConfig

    config = OperatorConfig.from_args(["--namespace=jhub", *argv], env)
    assert config.check_reachable is on and config.proxy_public_url == "http://proxy-public"
