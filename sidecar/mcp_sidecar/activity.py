"""Tell the hub an agent is using this server, so the idle culler does not stop it.

Agent traffic through an Ingress bypasses the proxy's activity tracking. Like the single-user
server, POST ``{"servers": {name: {"last_activity": ts}}, "last_activity": ts}`` to
JUPYTERHUB_ACTIVITY_URL with the server's own token (which holds ``users:activity!user``),
at most once per MCP_ACTIVITY_INTERVAL. A post runs in the background: a slow or failing hub
never delays or fails a tool call. A failure is logged once, until a post succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from . import metrics
from .config import Settings

log = logging.getLogger(__name__)
POST_TIMEOUT = 10.0


def activity_body(server_name: str, when: datetime) -> dict[str, Any]:
    stamp = when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"servers": {server_name: {"last_activity": stamp}}, "last_activity": stamp}


class ActivityReporter:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = settings.activity_url
        self.server_name = settings.server_name
        self.interval = settings.activity_interval
        self._token = settings.hub_api_token
        self._clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._last_post: float | None = None
        self._task: asyncio.Task[bool] | None = None
        self._failing = False

    @property
    def enabled(self) -> bool:
        return bool(self.url and self._token)

    def poke(self) -> None:
        """Agent activity happened now: post it unless one was posted within the interval."""
        if not self.enabled:
            return
        now = self._clock()
        if self._last_post is not None and now - self._last_post < self.interval:
            return
        if self._task is not None and not self._task.done():
            return
        self._last_post = now
        self._task = asyncio.get_running_loop().create_task(self.post(datetime.now(UTC)))

    async def post(self, when: datetime) -> bool:
        """One report; True when the hub took it. Never raises (except cancellation)."""
        assert self.url is not None
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=POST_TIMEOUT, transport=self._transport)
        try:
            response = await self._client.post(
                self.url,
                json=activity_body(self.server_name, when),
                headers={"Authorization": f"token {self._token}"},
            )
            ok = response.is_success
            problem = f"the hub answered {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            ok, problem = False, f"{type(exc).__name__}: {exc}"
        metrics.record_activity_post("ok" if ok else "error")
        if ok:
            if self._failing:
                log.info("activity reports to the hub work again")
            self._failing = False
        elif not self._failing:
            self._failing = True
            log.warning(
                "cannot report agent activity to %s (%s); will keep trying quietly", self.url, problem
            )
        return ok

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._client is not None:
            await self._client.aclose()
            self._client = None
