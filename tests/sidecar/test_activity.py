"""Activity reports against the real JupyterHub: throttled to one post per interval, accepted with a
token holding only ``users:activity!user=alice`` (what a server's own token holds), and a hub that
cannot be reached is logged once and never raised."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import pytest
from mcp_sidecar import metrics
from mcp_sidecar.activity import ActivityReporter
from mcp_sidecar.config import Settings

from tests.harness.hub import RunningHub
from tests.harness.paths import free_port

pytestmark = [pytest.mark.hub, pytest.mark.timeout(120)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reporter(
    hub: RunningHub, token: str, url: str | None = None, clock: Clock | None = None
) -> ActivityReporter:
    settings = Settings.from_env(
        {
            "MCP_TOKEN": "t",
            "JUPYTERHUB_API_TOKEN": token,
            "JUPYTERHUB_ACTIVITY_URL": url or f"{hub.api_url}/users/alice/activity",
            "MCP_ACTIVITY_INTERVAL": "60",
        }
    )
    return ActivityReporter(settings, clock=clock or Clock())


def posts(outcome: str) -> float:
    return metrics.ACTIVITY_POSTS.labels(outcome=outcome)._value.get()


async def settle(activity: ActivityReporter) -> None:
    if activity._task is not None:
        await asyncio.wait_for(asyncio.shield(activity._task), 30)


async def test_throttled_to_one_post_per_interval(jupyterhub: RunningHub) -> None:
    token, _ = jupyterhub.mint_token("alice", scopes=["users:activity!user=alice"], note="server")
    clock = Clock()
    activity = reporter(jupyterhub, token, clock=clock)
    marker = "POST /hub/api/users/alice/activity"
    before_log, before_ok = jupyterhub.count_requests(marker), posts("ok")
    try:
        for _ in range(5):
            activity.poke()
            await settle(activity)
        assert posts("ok") - before_ok == 1
        clock.now += 61
        activity.poke()
        await settle(activity)
        assert posts("ok") - before_ok == 2
    finally:
        await activity.aclose()
    deadline = time.monotonic() + 30
    while jupyterhub.count_requests(marker) - before_log < 2:
        assert time.monotonic() < deadline, "the hub did not log the activity posts"
        await asyncio.sleep(0.1)
    assert jupyterhub.count_requests(marker) - before_log == 2
    assert jupyterhub.api("GET", "/users/alice").json()["last_activity"]


async def test_unreachable_hub_is_logged_once_and_never_raised(
    jupyterhub: RunningHub, caplog: pytest.LogCaptureFixture
) -> None:
    token, _ = jupyterhub.mint_token("alice", scopes=["users:activity!user=alice"], note="server")
    caplog.set_level(logging.INFO, logger="mcp_sidecar.activity")
    dead = reporter(jupyterhub, token, url=f"http://127.0.0.1:{free_port()}/hub/api/users/alice/activity")
    try:
        assert await dead.post(datetime.now(UTC)) is False
        assert await dead.post(datetime.now(UTC)) is False
        # the hub refusing (a token without users:activity) is a failure too, still quiet
        dead.url = f"{jupyterhub.api_url}/users/bob/activity"
        assert await dead.post(datetime.now(UTC)) is False
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "cannot report agent activity" in warnings[0].getMessage()
        assert token not in caplog.text
        dead.url = f"{jupyterhub.api_url}/users/alice/activity"
        assert await dead.post(datetime.now(UTC)) is True
        assert "work again" in caplog.text
    finally:
        await dead.aclose()
