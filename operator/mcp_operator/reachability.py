"""Is a wired pod's MCP endpoint really reachable where its users are told it is?

After wiring, the operator asks the public path from inside the cluster, without a token, and
expects the sidecar's own answer: 401 with `WWW-Authenticate: Bearer`. Anything else means the
route is not (yet) in front of the sidecar: Jupyter's or the proxy's 404, the hub's login
redirect, a proxy with no live target (503). `judge` is pure; `ReachabilityProbe` does the HTTP,
retrying for a short while since a route takes effect a moment after it is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from mcp_operator.backoff import backoff_delay

ReachReason = Literal["SidecarAnswered", "NotRouted", "RoutedElsewhere", "NoBackend", "NoAnswer"]


@dataclass(frozen=True)
class Verdict:
    reachable: bool
    reason: ReachReason
    message: str


def probe_base(
    route_mode: str, *, proxy_public_url: str, route_host: str | None, hub_public_url: str | None = None
) -> str | None:
    """Where users reach the endpoint, asked from inside the cluster: the proxy's public Service in
    `proxy` mode; in `ingress`/`gateway` mode the route's host, or without one the hub's public
    URL (what the token Secret advertises), or nothing to ask; nothing in mode `none`."""
    if route_mode == "proxy":
        return proxy_public_url.rstrip("/")
    if route_mode in ("ingress", "gateway"):
        if route_host:
            return (route_host if "://" in route_host else f"https://{route_host}").rstrip("/")
        if hub_public_url:
            # The public URL's own path is the hub's base URL, already in the pod's prefix.
            parts = urlsplit(hub_public_url)
            return f"{parts.scheme}://{parts.netloc}"
    return None


def judge(status: int | None, headers: Mapping[str, str], *, url: str, error: str | None = None) -> Verdict:
    """What an unauthenticated request to the MCP path says about the route."""
    if status is None:
        return Verdict(False, "NoAnswer", f"{url} did not answer ({error or 'no response'})")
    challenge = headers.get("www-authenticate", "")
    if status == 401 and challenge.lower().startswith("bearer"):
        return Verdict(
            True, "SidecarAnswered", f"{url} answered 401 with WWW-Authenticate: Bearer (the sidecar)"
        )
    if status == 404:
        return Verdict(
            False,
            "NotRouted",
            f"{url} answered 404: the request reached Jupyter or the proxy's default, not the sidecar; "
            "check spec.route.mode against how traffic reaches the hub",
        )
    if status in (502, 503, 504):
        return Verdict(
            False, "NoBackend", f"{url} answered {status}: the route exists but its target does not answer"
        )
    return Verdict(
        False,
        "RoutedElsewhere",
        f"{url} answered {status} without a Bearer challenge: something else than the sidecar serves it",
    )


Get = Callable[[str], Awaitable[httpx.Response]]


class ReachabilityProbe:
    def __init__(
        self,
        get: Get | None = None,
        *,
        attempts: int = 6,
        first_delay: float = 0.5,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._client: httpx.AsyncClient | None = None
        self._get = get
        self.attempts = attempts
        self.first_delay = first_delay
        self.sleep = sleep

    async def _fetch(self, url: str) -> httpx.Response:
        if self._get is not None:
            return await self._get(url)
        if self._client is None:
            # No redirects: the hub's login redirect is an answer ("not the sidecar"), not a hop.
            # No certificate check: no credential is sent and only the status is read, and a
            # route host's certificate may come from a CA the operator's image does not hold.
            self._client = httpx.AsyncClient(timeout=10, follow_redirects=False, verify=False)  # noqa: S501
        return await self._client.get(url, headers={"Accept": "application/json, text/event-stream"})

    async def check(self, url: str) -> Verdict:
        """Until the sidecar answers, or the last attempt's verdict (about 15 s in all)."""
        verdict = judge(None, {}, url=url)
        for attempt in range(self.attempts):
            try:
                response = await self._fetch(url)
                verdict = judge(response.status_code, response.headers, url=url)
            except httpx.HTTPError as e:
                verdict = judge(None, {}, url=url, error=type(e).__name__)
            if verdict.reachable or attempt == self.attempts - 1:
                return verdict
            await self.sleep(backoff_delay(attempt, self.first_delay))
        return verdict

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
