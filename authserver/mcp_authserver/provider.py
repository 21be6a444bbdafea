"""The MCP SDK's authorization-server provider protocol, backed by the hub.

The SDK's handlers parse and check every request (PKCE S256, redirect URI, client authentication,
grant types); this provider decides and keeps state. ``authorize`` parks the request and sends the
browser to our consent page (the user logs in there through the hub's own OAuth); the page
``approve``s, which makes the code. Exchanging a code or a refresh token mints a hub token for the
user with only ``custom:mcp:<tier>!server=<user>/<server>`` and a short expiry, noted with the
client's name (the user sees and can revoke it on the hub's token page). Refresh tokens rotate on
use; one used twice revokes its grant, as does a replayed code.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    RegistrationError,
    TokenError,
    construct_redirect_uri,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp_operator.hubclient import HubClient, HubError

from . import resources
from .config import Settings
from .resources import Server
from .store import JsonFileStore, digest

log = logging.getLogger(__name__)
audit_log = logging.getLogger("mcp_authserver.audit")
CODE_TTL = 120  # seconds an authorization code lives (RFC 6749 §4.1.2: short)
REQUEST_TTL = 900  # seconds a parked authorization request waits for login and consent
CONSENT_PATH = "consent"


def audit(event: str, **fields: Any) -> None:
    """One JSON line per decision; never a secret (codes and tokens appear only as nothing)."""
    audit_log.info(json.dumps({"time": round(time.time(), 3), "event": event, **fields}, sort_keys=True))


class Grant(RefreshToken):
    grant_id: str


class Code(AuthorizationCode):
    user: str
    server_name: str
    tier: str


class HubProvider:
    """Implements ``mcp.server.auth.provider.OAuthAuthorizationServerProvider``."""

    def __init__(self, settings: Settings, store: JsonFileStore, hub: HubClient) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub

    # --- clients (RFC 7591) ---------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        data = await self.store.read()
        entry = data["clients"].get(client_id)
        return OAuthClientInformationFull.model_validate(entry) if entry else None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        for uri in client_info.redirect_uris or []:
            problem = resources.redirect_problem(str(uri), self.settings.extra_redirect_schemes)
            if problem:
                audit("register", outcome="refused", reason=problem, client_name=client_info.client_name)
                raise RegistrationError("invalid_redirect_uri", problem)
        async with self.store.change() as data:
            data["clients"][client_info.client_id] = client_info.model_dump(mode="json", exclude_none=True)
        audit("register", outcome="ok", client_id=client_info.client_id, client_name=client_info.client_name)

    # --- authorization ---------------------------------------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        server = resources.server_of(params.resource, self.settings.public_url, self.settings.hub_base_url)
        if server is None:
            audit("authorize", outcome="refused", reason="invalid_target", client_id=client.client_id)
            raise AuthorizeError(
                "invalid_target",
                f"resource {params.resource!r} is not a user server's MCP endpoint on this hub "
                f"(expected {self.settings.public_url}{self.settings.hub_base_url}user/<name>/mcp)",
            )
        request_id = secrets.token_urlsafe(24)
        async with self.store.change() as data:
            data["pending"][request_id] = {
                "client_id": client.client_id,
                "redirect_uri": str(params.redirect_uri),
                "explicit": params.redirect_uri_provided_explicitly,
                "code_challenge": params.code_challenge,
                "state": params.state,
                "resource": params.resource,
                "user": server.user,
                "server_name": server.name,
                "tier": resources.tier_of(params.scopes, self.settings.max_tier),
                "expires_at": time.time() + REQUEST_TTL,
            }
        return f"{self.settings.issuer}/{CONSENT_PATH}?{urlencode({'request': request_id})}"

    async def pending(self, request_id: str) -> dict[str, Any] | None:
        return (await self.store.read())["pending"].get(request_id)

    async def decide(self, request_id: str, user: str, tier: str | None) -> str | None:
        """The user's answer on the consent page (``tier`` None: denied) -> where the browser goes
        (the client's redirect URI with a code or ``access_denied``); None when the request is gone
        or is not the user's to answer."""
        async with self.store.change() as data:
            request = data["pending"].get(request_id)
            if request is None or request["user"] != user:
                return None
            del data["pending"][request_id]
            if tier is None or tier not in resources.tiers_up_to(request["tier"]):
                audit("consent", outcome="denied", user=user, client_id=request["client_id"])
                return construct_redirect_uri(
                    request["redirect_uri"],
                    error="access_denied",
                    error_description="the user did not allow this client",
                    state=request["state"],
                )
            code = secrets.token_urlsafe(32)
            data["codes"][digest(code)] = {**request, "tier": tier, "expires_at": time.time() + CODE_TTL}
        audit(
            "consent",
            outcome="approved",
            user=user,
            client_id=request["client_id"],
            tier=tier,
            server=f"{request['user']}/{request['server_name']}",
        )
        return construct_redirect_uri(request["redirect_uri"], code=code, state=request["state"])

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> Code | None:
        key = digest(authorization_code)
        replayed_grant = None
        async with self.store.change() as data:
            entry = data["codes"].pop(key, None)
            if entry is None:
                used = data["used_codes"].get(key)
                if used is None:
                    return None
                replayed_grant = used.get("grant_id")
            else:
                # Single use from here on: the SDK checks PKCE and the redirect URI next, and a
                # wrong answer there must not leave the code for another try.
                data["used_codes"][key] = {"grant_id": None, "expires_at": time.time() + 86400}
        if replayed_grant is not None or entry is None:
            # RFC 6749 §4.1.2: a code used twice revokes what it gave.
            audit(
                "token", outcome="refused", reason="replayed authorization code", client_id=client.client_id
            )
            if replayed_grant:
                await self._revoke_grant(replayed_grant, why="authorization code replayed")
            return None
        return Code(
            code=key,
            scopes=resources.scopes_for(entry["tier"]),
            expires_at=entry["expires_at"],
            client_id=entry["client_id"],
            code_challenge=entry["code_challenge"],
            redirect_uri=entry["redirect_uri"],
            redirect_uri_provided_explicitly=entry["explicit"],
            resource=entry["resource"],
            subject=entry["user"],
            user=entry["user"],
            server_name=entry["server_name"],
            tier=entry["tier"],
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: Code
    ) -> OAuthToken:
        server = Server(authorization_code.user, authorization_code.server_name)
        grant_id = secrets.token_urlsafe(16)
        token = await self._issue(
            client, server, authorization_code.tier, authorization_code.resource, grant_id
        )
        async with self.store.change() as data:
            used = data["used_codes"].get(authorization_code.code)
            if used is not None:
                used["grant_id"] = grant_id
        audit(
            "token",
            outcome="issued",
            grant="authorization_code",
            user=server.user,
            server=server.label,
            tier=authorization_code.tier,
            client_id=client.client_id,
        )
        return token

    # --- refresh (rotating) ----------------------------------------------------------------------

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> Grant | None:
        key = digest(refresh_token)
        data = await self.store.read()
        for grant_id, grant in data["grants"].items():
            if secrets.compare_digest(grant["refresh_hash"], key):
                return Grant(
                    token=key,
                    client_id=grant["client_id"],
                    scopes=resources.scopes_for(grant["tier"]),
                    expires_at=int(grant["expires_at"]),
                    resource=grant["resource"],
                    subject=grant["user"],
                    grant_id=grant_id,
                )
        used = data["used_refresh"].get(key)
        if used is not None:
            # A rotated-away refresh token came back: someone holds a copy. Revoke the whole grant.
            audit("token", outcome="refused", reason="refresh token used twice", client_id=client.client_id)
            await self._revoke_grant(used["grant_id"], why="refresh token used twice")
        return None

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: Grant, scopes: list[str]
    ) -> OAuthToken:
        async with self.store.change() as data:
            grant = data["grants"].get(refresh_token.grant_id)
            if grant is None or grant["refresh_hash"] != refresh_token.token:
                raise TokenError("invalid_grant", "refresh token already used or revoked: authorize again")
            # Rotate first, under the lock: a second use of the same token finds it used.
            data["used_refresh"][refresh_token.token] = {
                "grant_id": refresh_token.grant_id,
                "expires_at": grant["expires_at"],
            }
            grant["refresh_hash"] = ""
        tier = resources.tier_of(scopes, grant["tier"])
        server = Server(grant["user"], grant["server_name"])
        token = await self._issue(
            client,
            server,
            tier,
            grant["resource"],
            refresh_token.grant_id,
            previous_hub_token=grant["hub_token_id"],
        )
        audit(
            "token",
            outcome="issued",
            grant="refresh_token",
            user=server.user,
            server=server.label,
            tier=tier,
            client_id=client.client_id,
        )
        return token

    # --- access tokens and revocation (RFC 7009) ---------------------------------------------------

    async def load_access_token(self, token: str) -> AccessToken | None:
        key = digest(token)
        data = await self.store.read()
        for grant_id, grant in data["grants"].items():
            if secrets.compare_digest(grant["access_hash"], key):
                return AccessToken(
                    token=grant_id,  # revoke_token finds the grant by this
                    client_id=grant["client_id"],
                    scopes=resources.scopes_for(grant["tier"]),
                    expires_at=int(grant["access_expires_at"]),
                    resource=grant["resource"],
                    subject=grant["user"],
                )
        return None

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        grant_id = token.grant_id if isinstance(token, Grant) else token.token
        await self._revoke_grant(grant_id, why="revoked by the client")

    # --- the hub -----------------------------------------------------------------------------------

    async def _issue(
        self,
        client: OAuthClientInformationFull,
        server: Server,
        tier: str,
        resource: str | None,
        grant_id: str,
        previous_hub_token: str | None = None,
    ) -> OAuthToken:
        name = client.client_name or client.client_id
        try:
            minted = await self.hub.mint(
                server.user,
                scopes=resources.hub_scopes(server, tier),
                expires_in=self.settings.access_ttl,
                note=f"MCP client {name[:80]} ({tier}, via jupyterhub-mcp authorization)",
            )
        except HubError as exc:
            log.warning("could not mint a token for %s: %s", server.user, exc)
            raise TokenError("invalid_grant", f"the hub would not issue the token: {exc}") from None
        refresh = secrets.token_urlsafe(32)
        now = time.time()
        async with self.store.change() as data:
            previous = data["grants"].get(grant_id, {})
            data["grants"][grant_id] = {
                "client_id": client.client_id,
                "client_name": name,
                "user": server.user,
                "server_name": server.name,
                "tier": previous.get("tier", tier),  # a refresh may narrow a token, never the grant
                "resource": resource,
                "hub_token_id": minted.id,
                "access_hash": digest(minted.value),
                "access_expires_at": now + self.settings.access_ttl,
                "refresh_hash": digest(refresh),
                "expires_at": previous.get("expires_at", now + self.settings.refresh_ttl),
            }
        if previous_hub_token:
            await self._revoke_hub_token(server.user, previous_hub_token)
        return OAuthToken(
            access_token=minted.value,
            token_type="Bearer",
            expires_in=self.settings.access_ttl,
            scope=" ".join(resources.scopes_for(tier)),
            refresh_token=refresh,
        )

    async def _revoke_grant(self, grant_id: str, *, why: str) -> None:
        async with self.store.change() as data:
            grant = data["grants"].pop(grant_id, None)
            for key in [k for k, v in data["used_refresh"].items() if v.get("grant_id") == grant_id]:
                del data["used_refresh"][key]
        if grant is None:
            return
        await self._revoke_hub_token(grant["user"], grant["hub_token_id"])
        audit("revoke", outcome="ok", reason=why, user=grant["user"], client_id=grant["client_id"])

    async def _revoke_hub_token(self, user: str, token_id: str) -> None:
        try:
            await self.hub.revoke(user, token_id)
        except HubError as exc:
            # The token still expires on its own (access_ttl); say so rather than fail the caller.
            log.warning("could not revoke hub token %s of %s: %s", token_id, user, exc)
