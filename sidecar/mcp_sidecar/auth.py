"""Who may call this sidecar: an ASGI middleware in front of the MCP route.

Hub mode (JUPYTERHUB_API_URL set): the token (``Authorization: Bearer X`` or ``token X``;
``?token=X`` only with JUPYTERHUB_ALLOW_TOKEN_IN_URL=1) is shown to ``GET {hub}/user``, and the
scopes the hub answers with must reach *this* server (``scopes.check_access``: a custom:mcp scope,
which also caps the tool tier, or access:servers unless MCP_ACCEPT_SERVER_ACCESS is false).
Answers, admitted or refused, are cached by sha256(token) for MCP_AUTH_CACHE_TTL seconds (an
admitted one never past the token's expires_at, when the sidecar's own token may read it), and
concurrent requests with one token share a single hub request. Look-ups of tokens not seen before
are rate-limited (MCP_HUB_LOOKUPS_PER_SECOND, MCP_HUB_LOOKUP_BURST; tokens the hub admitted
recently are exempt): past the limit a 503 with Retry-After, never a false 401. The hub being
down is a 503, never cached, never an open door. Static mode (MCP_TOKEN): one shared secret,
compared in constant time.

On success the middleware stores an ``Identity`` in ``scope["state"]["identity"]``, rewrites the
header to ``Authorization: Bearer X`` (the MCP SDK parses only Bearer) and removes ``token`` from
the query string (so no later layer, access log included, sees it). It never logs or echoes a
token. A 401 names the protected resource metadata (``resource_metadata``) only when an
authorization server is configured (clients would otherwise start an OAuth flow and drop the header).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlencode

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics, resource_metadata
from .config import Settings
from .guard import Identity
from .scopes import check_access

log = logging.getLogger(__name__)
HUB_TIMEOUT = 5.0  # an agent waits on this; a hub slower than that counts as unavailable
RETRY_AFTER = "5"
INVALID_REQUEST = -32600  # JSON-RPC: what the SDK answers an unknown session with


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    """The token from ``Authorization: Bearer X`` or ``Authorization: token X``."""
    raw = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, value = raw.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return None


def split_query_token(query_string: bytes) -> tuple[str | None, bytes]:
    """``(token, query without token)`` from a raw query string."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    token = next((v for k, v in pairs if k == "token" and v), None)
    rest = [(k, v) for k, v in pairs if k != "token"]
    return token, urlencode(rest).encode("latin-1")


CACHE_MAX_ENTRIES = 1024  # remembered hub answers; each is a hash and a verdict


@dataclass(frozen=True)
class Verdict:
    """The answer for one token: ``status`` 200 admits with ``identity``; otherwise the refusal."""

    status: int
    message: str
    reason: str  # metrics label: ok, missing, invalid, forbidden, hub_unavailable
    identity: Identity | None = None


def cache_lifetime(ttl: float, expires_at: datetime | None, now: datetime) -> float:
    """Pure: how long an admitted answer may be cached: the TTL, never past the token's expiry
    (an expired token must not ride on a cached yes)."""
    if expires_at is None:
        return ttl
    return max(0.0, min(ttl, (expires_at - now).total_seconds()))


def parse_expiry(value: object) -> datetime | None:
    """The hub's ``expires_at`` (ISO 8601, trailing Z; null: never expires)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class TokenBucket:
    """Pure (the clock is passed in): at most ``burst`` at once, refilled at ``rate`` a second."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class HubUnavailable(Exception):
    """The hub could not answer (down, slow, 5xx): the caller gets 503; nothing is cached."""


class HubTokenChecker:
    """Asks the hub who a token is, with a TTL cache (by token hash) and single-flight."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        assert settings.hub_api_url and settings.user
        self.url = settings.hub_api_url + "/user"
        self.owner = settings.user
        self.server_name = settings.server_name
        self.ttl = settings.auth_cache_ttl
        self.accept_server_access = settings.accept_server_access
        self.api_url = settings.hub_api_url
        # The sidecar's own hub token: reads an admitted token's expiry when it holds
        # read:tokens on the user (without it, answers are cached for the TTL alone).
        self.own_token = settings.hub_api_token
        self._clock = clock
        self._wall: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._cache: dict[str, tuple[float, Verdict]] = {}
        self._inflight: dict[str, asyncio.Task[Verdict]] = {}
        # Hub look-ups for tokens not seen before are rate-limited, so a flood of garbage tokens
        # cannot make one hub request each. Tokens the hub admitted recently are exempt: their
        # owner is never locked out by someone else's flood when the cached answer runs out.
        self.lookup_rate = settings.hub_lookups_per_second
        self._lookups = TokenBucket(settings.hub_lookups_per_second, settings.hub_lookup_burst, clock())
        self._admitted: OrderedDict[str, None] = OrderedDict()

    async def check(self, token: str) -> Verdict:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        task = self._inflight.get(key)
        if task is None:
            if key not in self._admitted and not self._lookups.take(now):
                return Verdict(
                    503,
                    "the sidecar is rate-limiting look-ups of tokens it has not seen "
                    f"(at most {self.lookup_rate:g} a second): try again in a few seconds",
                    "rate_limited",
                )
            task = asyncio.get_running_loop().create_task(self._ask_hub(key, token))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # shield: one caller hanging up must not cancel the lookup the others are waiting on
        return await asyncio.shield(task)

    async def _ask_hub(self, key: str, token: str) -> Verdict:
        try:
            model = await self._whoami(token)
            verdict = self.judge(model)
        except HubUnavailable as exc:
            return Verdict(
                503, f"cannot check the token right now: {exc}; try again shortly", "hub_unavailable"
            )
        lifetime = self.ttl
        if verdict.identity is not None and model is not None:
            expires_at = await self._expiry(str(model.get("name") or ""), model.get("token_id"))
            lifetime = cache_lifetime(self.ttl, expires_at, self._wall())
        if lifetime > 0:
            self._cache[key] = (self._clock() + lifetime, verdict)
            self._purge()
        if verdict.identity is not None:
            self._admitted[key] = None
            self._admitted.move_to_end(key)
            while len(self._admitted) > CACHE_MAX_ENTRIES:
                self._admitted.popitem(last=False)
        else:
            self._admitted.pop(key, None)  # revoked: a look-up like any unseen token's
        return verdict

    async def _expiry(self, user: str, token_id: object) -> datetime | None:
        """The admitted token's expiry, read with the sidecar's own token; None when unknown (no
        own token, no read:tokens, hub trouble: the TTL alone then bounds the cache)."""
        if not self.own_token or not user or not isinstance(token_id, str) or self._client is None:
            return None
        url = f"{self.api_url}/users/{quote(user, safe='')}/tokens/{quote(token_id, safe='')}"
        metrics.record_hub_auth_request()
        try:
            response = await self._client.get(url, headers={"Authorization": f"token {self.own_token}"})
        except httpx.HTTPError:
            return None
        if not response.is_success:
            return None
        try:
            return parse_expiry(response.json().get("expires_at"))
        except (ValueError, AttributeError):
            return None

    async def _whoami(self, token: str) -> dict | None:
        """The hub's model of the token's owner, or None when the hub does not know the token."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=HUB_TIMEOUT, transport=self._transport)
        metrics.record_hub_auth_request()
        try:
            response = await self._client.get(self.url, headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"JupyterHub at {self.url} is unreachable ({type(exc).__name__})") from None
        # Only 401/403 say "not a valid token". Anything else (a 404 from a wrong
        # JUPYTERHUB_API_URL, a proxy's error page) is the hub not answering: 503, never cached.
        if response.status_code in (401, 403):
            return None
        if response.status_code == 404:
            raise HubUnavailable(
                f"JupyterHub at {self.url} answered 404 (is JUPYTERHUB_API_URL the hub's API URL?)"
            )
        if not response.is_success:
            raise HubUnavailable(f"JupyterHub at {self.url} answered {response.status_code}")
        try:
            model = response.json()
        except ValueError:
            raise HubUnavailable(
                f"JupyterHub at {self.url} answered with something that is not JSON"
            ) from None
        if not isinstance(model, dict):
            raise HubUnavailable(f"JupyterHub at {self.url} answered with an unexpected document")
        return model

    def judge(self, model: dict | None) -> Verdict:
        """Pure: the hub's answer -> the verdict for this server."""
        if model is None:
            return Verdict(401, "invalid, expired or revoked token", "invalid")
        scopes = [s for s in model.get("scopes") or [] if isinstance(s, str)]
        decision = check_access(
            self.owner, self.server_name, scopes, accept_server_access=self.accept_server_access
        )
        who = str(model.get("name") or "?")
        if not decision.allowed:
            return Verdict(403, f"{who}: {decision.reason}", "forbidden")
        identity = Identity(
            user=who,
            kind="hub",
            token_id=model.get("token_id"),
            token_note=model.get("token_note"),
            scopes=frozenset(scopes),
            tier=decision.tier,
        )
        return Verdict(200, decision.reason, "ok", identity)

    def _purge(self) -> None:
        # Bounded memory under a flood of garbage tokens: drop expired answers, then, if a flood
        # within one TTL still overflows, the oldest ones (dicts keep insertion order).
        if len(self._cache) > CACHE_MAX_ENTRIES:
            now = self._clock()
            for stale in [k for k, (expires, _) in self._cache.items() if expires <= now]:
                del self._cache[stale]
            while len(self._cache) > CACHE_MAX_ENTRIES:
                del self._cache[next(iter(self._cache))]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class SessionOwners:
    """Which caller opened which live MCP session, so one admitted caller cannot drive another's
    session (several identities may reach one server: the owner, an admin, a shared-server guest).
    Keyed by user name, not token, so a rotated token keeps its sessions.

    An entry lives exactly as long as its session: recorded when the answer that opened it
    succeeded (and the session is still open, ``is_open``), forgotten when the session manager
    discards the session. Nothing else bounds it, and nothing needs to: a session id without an
    owner is refused, so forgetting never opens a door (a bounded map dropping its oldest owners
    let a second identity drive alice's session after 10 001 open-and-delete cycles)."""

    def __init__(self, is_open: Callable[[str], bool] = lambda _: True) -> None:
        self._is_open = is_open
        self._owners: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def record(self, session_id: str, owner: str) -> None:
        if self._is_open(session_id):
            self._owners[session_id] = owner

    def owner(self, session_id: str) -> str | None:
        return self._owners.get(session_id)

    def forget(self, session_id: str) -> None:
        self._owners.pop(session_id, None)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, sessions: SessionOwners | None = None) -> None:
        self.app = app
        self.settings = settings
        self.hub = HubTokenChecker(settings) if settings.uses_hub_auth else None
        self.sessions = sessions if sessions is not None else SessionOwners()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = bearer_token(dict(scope["headers"]))
        url_token, query_rest = split_query_token(scope.get("query_string", b""))
        if url_token is not None:
            # In place: the server's access log reads this same scope, and must not see the token.
            scope["query_string"] = query_rest
            if token is None and self.settings.allow_token_in_url:
                token = url_token
        verdict = await self.verify(token, url_token_refused=url_token is not None and token is None)
        if verdict.identity is None:
            metrics.record_auth_failure(verdict.reason)
            log.info("refused %s %s: %s", scope.get("method"), scope.get("path"), verdict.message)
            challenge = resource_metadata.www_authenticate(self.settings, verdict.reason, verdict.message)
            await _deny(send, verdict.status, verdict.message, challenge=challenge)
            return
        assert token is not None
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"authorization"] + [
            (b"authorization", b"Bearer " + token.encode())
        ]
        scope.setdefault("state", {})["identity"] = verdict.identity
        caller = verdict.identity.user or ""
        session_id = _header(scope, b"mcp-session-id")
        if session_id is not None:
            owner = self.sessions.owner(session_id)
            # 404 is what MCP answers for a session this caller cannot use: the client re-initializes.
            if owner is None:
                await _session_refused(send, "unknown or expired session: initialize a new session")
                return
            if owner != caller:
                await _deny(send, 404, "this MCP session belongs to another caller: initialize a new session")
                return
            await self.app(scope, receive, send)
            return

        async def send_and_record(message: Message) -> None:
            # The session is the caller's once the answer that opened it succeeded (the SDK keeps
            # it only then); a refused initialize leaves no owner behind.
            if message["type"] == "http.response.start" and message["status"] < 400:
                opened = dict(message.get("headers") or []).get(b"mcp-session-id")
                if opened:
                    self.sessions.record(opened.decode("latin-1"), caller)
            await send(message)

        await self.app(scope, receive, send_and_record)

    async def verify(self, token: str | None, *, url_token_refused: bool = False) -> Verdict:
        if not token:
            hint = " (a token in the URL is not accepted here)" if url_token_refused else ""
            return Verdict(401, f"missing token: send 'Authorization: Bearer <token>'{hint}", "missing")
        if not token.isascii() or not token.isprintable():
            return Verdict(401, "invalid token", "invalid")  # no hub can know it; httpx cannot send it
        if self.hub is not None:
            return await self.hub.check(token)
        expected = self.settings.static_token
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return Verdict(200, "static token", "ok", Identity(user=self.settings.user, kind="static"))
        return Verdict(401, "invalid token", "invalid")

    async def aclose(self) -> None:
        if self.hub is not None:
            await self.hub.aclose()


def _header(scope: Scope, name: bytes) -> str | None:
    value = dict(scope["headers"]).get(name)
    return value.decode("latin-1") if value is not None else None


async def _session_refused(send: Send, message: str) -> None:
    """404 with a JSON-RPC error, as the SDK answers a session it does not know."""
    error = {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}
    body = json.dumps(error).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _deny(send: Send, status: int, message: str, *, challenge: bytes | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", challenge or b'Bearer realm="jupyterhub-mcp"'))
    if status == 503:
        headers.append((b"retry-after", RETRY_AFTER.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
