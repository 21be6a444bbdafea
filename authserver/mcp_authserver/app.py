"""The ASGI app: the MCP SDK's authorization-server routes (metadata, register, authorize, token,
revoke) under the service's prefix, our consent page and hub-login callback, and the well-known
documents at the hub's origin (RFC 8414 path-aware, RFC 9728 for every user's endpoint), which the
proxy routes here (``Proxy.extra_routes``)."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from jupyterhub.services.auth import HubOAuth
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp_operator.hubclient import HubClient, HubError
from mcp_sidecar import resource_metadata
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import pages, resources
from .config import Settings
from .provider import CONSENT_PATH, HubProvider, audit
from .store import JsonFileStore

SESSION_COOKIE = "mcp-auth-session"
LOGIN_COOKIE = "mcp-auth-login"
SESSION_TTL = 3600  # our sign-in outlives a hub logout by at most this: keep it short
LOGIN_TTL = 600
NO_STORE = {"Cache-Control": "no-store"}


def build_app(
    settings: Settings, store: JsonFileStore | None = None, hub: HubClient | None = None
) -> Starlette:
    store = store or JsonFileStore(settings.state_file)
    hub = hub or HubClient(settings.hub_api_url, settings.hub_api_token)
    provider = HubProvider(settings, store, hub)
    hub_oauth = HubOAuth(api_token=settings.hub_api_token, api_url=settings.hub_api_url, cache_max_age=0)
    prefix = settings.service_prefix.rstrip("/")
    issuer = AnyHttpUrl(settings.issuer)
    # A client that registers without naming scopes may ask for any tier: the user still decides.
    scopes = list(resource_metadata.OAUTH_SCOPES)
    registration = ClientRegistrationOptions(enabled=True, valid_scopes=scopes, default_scopes=scopes)
    revocation = RevocationOptions(enabled=True)
    sdk_routes = create_auth_routes(provider, issuer, None, registration, revocation)  # type: ignore[arg-type]
    metadata = build_metadata(issuer, None, registration, revocation)
    metadata_endpoint = cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"])
    secure = settings.public_url.startswith("https://")
    consent_action = f"{prefix}/{CONSENT_PATH}"

    def page(html: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(html, status_code=status, headers={**NO_STORE, "X-Frame-Options": "DENY"})

    def message(title: str, text: str, status: int) -> HTMLResponse:
        return page(pages.message_page(settings.hub_base_url, title, text), status)

    async def start_hub_login(request_id: str) -> Response:
        """Send the browser through the hub's own login (whatever authenticator it runs)."""
        state = secrets.token_urlsafe(24)
        verifier, challenge, method = hub_oauth.generate_pkce_code_challenge()
        async with store.change() as data:
            data["logins"][state] = {
                "request_id": request_id,
                "verifier": verifier,
                "expires_at": time.time() + LOGIN_TTL,
            }
        query = {
            "client_id": hub_oauth.oauth_client_id,
            "redirect_uri": hub_oauth.oauth_redirect_uri,
            "response_type": "code",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": method,
        }
        response = RedirectResponse(f"{hub_oauth.oauth_authorization_url}?{urlencode(query)}", 302, NO_STORE)
        response.set_cookie(
            LOGIN_COOKIE,
            state,
            max_age=LOGIN_TTL,
            path=prefix + "/",
            httponly=True,
            secure=secure,
            samesite="lax",
        )
        return response

    async def consent(request: Request) -> Response:
        form = await request.form() if request.method == "POST" else None
        source: Any = form if form is not None else request.query_params
        request_id = str(source.get("request") or "")
        pending = await provider.pending(request_id) if request_id else None
        if pending is None:
            return message(
                "This request is no longer valid",
                "This authorization request expired or was already answered. "
                "Start again from your MCP client.",
                400,
            )
        user = pages.session_user(settings.secret, request.cookies.get(SESSION_COOKIE))
        if user is None:
            if form is not None:
                return message(
                    "Not signed in", "Your sign-in expired. Start again from your MCP client.", 403
                )
            return await start_hub_login(request_id)
        server = resources.Server(pending["user"], pending["server_name"])
        if user != server.user:
            audit(
                "consent",
                outcome="refused",
                reason="not the user's server",
                user=user,
                server=server.label,
                client_id=pending["client_id"],
            )
            return message(
                "Not your server",
                f"You are signed in as {user}, but this request is for {server.user}'s server. "
                "Only the owner of a server can allow a client to use it.",
                403,
            )
        client = await provider.get_client(pending["client_id"])
        if client is None:
            return message("Unknown client", "The client that asked is no longer registered.", 400)
        if form is None:
            return page(
                pages.consent_page(
                    hub_base=settings.hub_base_url,
                    action=consent_action,
                    request_id=request_id,
                    csrf=pages.csrf_token(settings.secret, user, request_id),
                    client_name=client.client_name or "An unnamed MCP client",
                    client_id=client.client_id,
                    redirect_uri=pending["redirect_uri"],
                    user=user,
                    server_label=server.label,
                    resource=pending["resource"],
                    max_tier=pending["tier"],
                    tiers=resources.tiers_up_to(pending["tier"]),
                )
            )
        if not pages.csrf_ok(settings.secret, user, request_id, str(form.get("csrf") or "")):
            audit("consent", outcome="refused", reason="csrf", user=user, client_id=pending["client_id"])
            return message("Form refused", "This form did not come from this page (CSRF check failed).", 403)
        tier = str(form.get("tier") or "") if form.get("decision") == "allow" else None
        target = await provider.decide(request_id, user, tier)
        if target is None:
            return message("This request is no longer valid", "It was already answered.", 400)
        return RedirectResponse(target, 302, NO_STORE)

    async def oauth_callback(request: Request) -> Response:
        state = request.query_params.get("state") or ""
        cookie = request.cookies.get(LOGIN_COOKIE) or ""
        if not state or not secrets.compare_digest(state, cookie):
            return message("Sign-in refused", "The sign-in did not start in this browser. Start again.", 403)
        async with store.change() as data:
            login = data["logins"].pop(state, None)
        code = request.query_params.get("code")
        if login is None or not code:
            return message("Sign-in refused", "This sign-in expired or was already used. Start again.", 403)
        token = await hub_oauth.token_for_code(code, code_verifier=login["verifier"], sync=False)
        model = await hub_oauth.user_for_token(token, use_cache=False, sync=False)
        if not model or not model.get("name"):
            return message("Sign-in refused", "The hub did not say who you are.", 403)
        # The hub token of this login only told us who it is: revoke it rather than let it linger.
        if isinstance(model.get("token_id"), str):
            with contextlib.suppress(HubError):
                await hub.revoke(model["name"], model["token_id"])
        query = urlencode({"request": login["request_id"]})
        response = RedirectResponse(f"{consent_action}?{query}", 302, NO_STORE)
        response.set_cookie(
            SESSION_COOKIE,
            pages.session_cookie(settings.secret, model["name"], SESSION_TTL),
            max_age=SESSION_TTL,
            path=prefix + "/",
            httponly=True,
            secure=secure,
            samesite="lax",
        )
        response.delete_cookie(LOGIN_COOKIE, path=prefix + "/")
        return response

    async def protected_resource(request: Request) -> Response:
        """RFC 9728 at the hub's origin, for every user's endpoint (the sidecar serves the same)."""
        resource = settings.public_url + "/" + request.path_params["path"]
        server = resources.server_of(resource, settings.public_url, settings.hub_base_url)
        if server is None:
            return JSONResponse({"error": "not an MCP endpoint of this hub"}, 404)
        canonical = resources.resource_url(server, settings.public_url, settings.hub_base_url)
        document = resource_metadata.document(canonical, [settings.issuer])
        return JSONResponse(document, headers={"Access-Control-Allow-Origin": "*"})

    async def index(request: Request) -> Response:
        return JSONResponse({"issuer": settings.issuer, "service": "jupyterhub-mcp authorization"})

    service_routes = [
        *sdk_routes,
        Route(f"/{CONSENT_PATH}", consent, methods=["GET", "POST"]),
        Route("/oauth_callback", oauth_callback, methods=["GET"]),
        Route("/", index, methods=["GET"]),
    ]
    routes = [
        Route(
            f"/.well-known/oauth-authorization-server{prefix}", metadata_endpoint, methods=["GET", "OPTIONS"]
        ),
        Route("/.well-known/oauth-protected-resource/{path:path}", protected_resource, methods=["GET"]),
        Mount(prefix, routes=service_routes),
    ]
    app = Starlette(routes=routes)
    return AuditErrors(app, prefix)  # type: ignore[return-value]


class AuditErrors:
    """Every refusal of the SDK's endpoints (register, token, revoke) gets an audit line with the
    RFC's error code, which the SDK answers without telling us."""

    WATCHED = ("/register", "/token", "/revoke", "/authorize")

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.paths = {prefix + p: p.strip("/") for p in self.WATCHED}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.paths.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        status = 0
        location = ""
        body = b""

        async def watch(message: Message) -> None:
            nonlocal status, location, body
            if message["type"] == "http.response.start":
                status = message["status"]
                location = dict(message.get("headers") or []).get(b"location", b"").decode("latin-1")
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < 4096:
                body += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, watch)
        if status >= 400:
            try:
                error = json.loads(body or b"{}")
            except ValueError:
                error = {}
            audit(
                endpoint,
                outcome="refused",
                status=status,
                error=error.get("error"),
                description=error.get("error_description"),
            )
        elif status == 302 and "error=" in location and endpoint == "authorize":
            audit(
                endpoint, outcome="refused", status=status, error=location.split("error=", 1)[1].split("&")[0]
            )
