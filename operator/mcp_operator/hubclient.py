"""Async JupyterHub API client for per-user tokens: mint, list, revoke.

The operator talks to the hub as a hub *service* (URL and token from the chart). The service needs
the `tokens` scope (which includes `read:tokens`) on the users it issues for; see README.

Transient failures (connection errors, timeouts, 429/502/503/504) are retried with exponential
backoff and end in `HubUnavailable`; anything else the hub refuses ends in `HubRefused` at once.
Token values never reach a log line or an exception message: only token ids do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Self
from urllib.parse import quote

import httpx

from mcp_operator.backoff import backoff_delay
from mcp_operator.endpoint import MCP_SCOPE_PREFIX
from mcp_operator.tokens import HubToken, MintedToken

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class HubError(Exception):
    """The hub did not do what we asked."""


class HubUnavailable(HubError):
    """The hub could not be reached (or kept answering 'try later') after all retries."""


MCP_SCOPES_HINT = (
    "the hub must define the custom:mcp:* scopes (c.JupyterHub.custom_scopes) and grant users "
    "custom:mcp:execute!user in their role: see the README's 'MCP scopes' section"
)


class HubRefused(HubError):
    """The hub answered and said no (bad service token, missing scope, unknown user...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"hub refused with HTTP {status}: {message}")
        self.status = status


class HubNotConfigured(HubRefused):
    """No hub API URL for this server: neither configured nor on the pod."""

    def __init__(self, message: str) -> None:
        HubError.__init__(self, message)
        self.status = 0


def _user_path(user: str) -> str:
    # Same escaping the hub applies to user names in its own URLs.
    return f"users/{quote(user, safe='@~')}"


def _redirect_message(api_url: str, response: httpx.Response) -> str:
    """The hub API never redirects a correct URL: a 3xx means the URL misses the hub's base URL."""
    location = response.headers.get("location", "")
    return (
        f"the hub answered {response.status_code} (to {location or 'elsewhere'}) at {api_url}: this is "
        "probably not the hub API. With a hub base URL (Zero to JupyterHub hub.baseUrl, e.g. /jhub/) "
        "the API is at http://hub:8081<baseUrl>hub/api: set the chart's hub.apiUrl (JUPYTERHUB_API_URL) "
        "to that, or leave it empty so each pod's own JUPYTERHUB_API_URL is used"
    )


def _hub_message(response: httpx.Response) -> str:
    """The hub's own error message ({"status": ..., "message": ...}), for error reports."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return response.reason_phrase


class HubClient:
    """Thin shell over the hub REST API; one pooled connection for the operator's lifetime."""

    def __init__(
        self,
        api_url: str,
        service_token: str,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        timeout: float = 10.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not api_url:
            raise ValueError("hub API URL is empty (set JUPYTERHUB_API_URL / --hub-api-url)")
        if not service_token:
            raise ValueError("hub service token is empty (set JUPYTERHUB_API_TOKEN)")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, not {attempts}")
        self.api_url = api_url.rstrip("/") + "/"
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"token {service_token}"},
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(
        self, method: str, path: str, *, json: Any = None, ok: tuple[int, ...]
    ) -> httpx.Response:
        for attempt in range(1, self._attempts + 1):
            delay = backoff_delay(attempt - 1, self._backoff, cap=self._max_backoff)
            try:
                response = await self._http.request(method, path, json=json)
            except httpx.TransportError as e:
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if response.status_code in ok:
                    return response
                if 300 <= response.status_code < 400:
                    raise HubRefused(response.status_code, _redirect_message(self.api_url, response))
                if response.status_code not in RETRY_STATUSES:
                    raise HubRefused(response.status_code, _hub_message(response))
                problem = f"HTTP {response.status_code}"
            if attempt == self._attempts:
                raise HubUnavailable(
                    f"hub at {self.api_url} unavailable after {attempt} attempts: {method} {path}: {problem}"
                )
            log.warning(
                "hub %s %s failed (%s); retry %d/%d in %.1fs",
                method,
                path,
                problem,
                attempt,
                self._attempts - 1,
                delay,
            )
            await self._sleep(delay)
        raise AssertionError("unreachable")

    async def mint(self, user: str, *, scopes: list[str], expires_in: int, note: str) -> MintedToken:
        """POST /users/{user}/tokens. A token minted while the answer got lost (timeout, then a
        retry) is a stray: the next check finds it by its note and revokes it."""
        try:
            response = await self._request(
                "POST",
                f"{_user_path(user)}/tokens",
                json={"scopes": scopes, "expires_in": expires_in, "note": note},
                ok=(200, 201),
            )
        except HubRefused as e:
            if e.status == 400 and MCP_SCOPE_PREFIX in str(e):
                # The hub does not define the MCP scopes, or the user's role does not grant them.
                said = str(e).split(": ", 1)[-1]
                raise HubRefused(e.status, f"{said}; {MCP_SCOPES_HINT}") from e
            raise
        minted = MintedToken.from_model(response.json())
        log.info("minted hub token %s for user %s (expires %s)", minted.id, user, minted.expires_at)
        return minted

    async def list_tokens(self, user: str) -> list[HubToken]:
        """GET /users/{user}/tokens (the hub leaves out expired ones)."""
        response = await self._request("GET", f"{_user_path(user)}/tokens", ok=(200,))
        return [HubToken.from_model(m) for m in response.json().get("api_tokens", [])]

    async def revoke(self, user: str, token_id: str) -> bool:
        """DELETE /users/{user}/tokens/{id}. True if revoked now, False if it was already gone."""
        try:
            await self._request("DELETE", f"{_user_path(user)}/tokens/{quote(token_id, safe='')}", ok=(204,))
        except HubRefused as e:
            if e.status == 404:
                return False
            raise
        log.info("revoked hub token %s of user %s", token_id, user)
        return True


class HubPool:
    """The hub API for each server: the configured one (`--hub-api-url`) when there is one, else
    the one the hub handed the pod (`JUPYTERHUB_API_URL`, which carries the hub's base URL). One
    pooled client per URL."""

    def __init__(
        self, service_token: str, api_url: str | None = None, *, factory: Callable[..., HubClient] = HubClient
    ) -> None:
        self.api_url = api_url or None
        self._token = service_token
        self._factory = factory
        self._clients: dict[str, HubClient] = {}

    def get(self, pod_api_url: str | None = None) -> HubClient:
        url = self.api_url or pod_api_url
        if not url:
            raise HubNotConfigured(
                "no hub API URL: the pod has no JUPYTERHUB_API_URL and none is configured "
                "(--hub-api-url, the chart's hub.apiUrl)",
            )
        if url not in self._clients:
            self._clients[url] = self._factory(url, self._token)
        return self._clients[url]

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))
