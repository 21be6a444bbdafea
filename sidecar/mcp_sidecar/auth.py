"""Who may call this sidecar. Minimal static-token version; issue 4 adds hub tokens.

ASGI middleware in front of the MCP route. On success it stores an ``Identity`` in
``scope["state"]["identity"]``; on failure it answers 401/403 itself.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings
from .guard import Identity


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    """The token from ``Authorization: Bearer X`` or ``Authorization: token X``."""
    raw = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, value = raw.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = bearer_token(dict(scope["headers"]))
        expected = self.settings.static_token
        if not token or not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            await _deny(send, 401, "missing or invalid token")
            return
        scope.setdefault("state", {})["identity"] = Identity(user=self.settings.user, kind="static")
        await self.app(scope, receive, send)


async def _deny(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="jupyterhub-mcp"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
