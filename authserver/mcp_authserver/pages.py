"""The pages a person sees (consent, refusal, errors), in the hub's look, and the signed values
that tie a browser to a login (session cookie, consent-form CSRF token). Pure: no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from html import escape
from urllib.parse import urlparse

TIER_TEXT = {
    "read": "read notebooks and files",
    "edit": "read and edit notebooks and files",
    "execute": "read, edit and run code in your kernels",
}


def sign(secret: str, purpose: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def session_cookie(secret: str, user: str, lifetime: int, now: float | None = None) -> str:
    expires = int((now or time.time()) + lifetime)
    name = base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
    return f"{name}.{expires}.{sign(secret, 'session', f'{name}.{expires}')}"


def session_user(secret: str, cookie: str | None, now: float | None = None) -> str | None:
    """The user a session cookie names, if its signature holds and it has not expired."""
    if not cookie or cookie.count(".") != 2:
        return None
    name, expires, mac = cookie.split(".")
    if not hmac.compare_digest(mac, sign(secret, "session", f"{name}.{expires}")):
        return None
    if not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    try:
        return base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except ValueError:
        return None


def csrf_token(secret: str, user: str, request_id: str) -> str:
    return sign(secret, "consent", f"{user}:{request_id}")


def csrf_ok(secret: str, user: str, request_id: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(token or "", csrf_token(secret, user, request_id))


def _page(hub_base: str, title: str, body: str) -> str:
    static = escape(hub_base.rstrip("/") + "/hub/static/css/style.min.css")
    logo = escape(hub_base.rstrip("/") + "/hub/logo")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{static}"></head>
<body><nav class="navbar border-bottom mb-4"><div class="container">
<img src="{logo}" alt="JupyterHub" height="28"></div></nav>
<div class="container" style="max-width: 40rem"><h1 class="h3 mb-3">{escape(title)}</h1>
{body}</div></body></html>"""


def consent_page(
    *,
    hub_base: str,
    action: str,
    request_id: str,
    csrf: str,
    client_name: str,
    client_id: str,
    redirect_uri: str,
    user: str,
    server_label: str,
    resource: str,
    max_tier: str,
    tiers: list[str],
) -> str:
    choices = "\n".join(
        f"""<div class="form-check"><input class="form-check-input" type="radio" name="tier" id="tier-{t}"
value="{t}"{" checked" if t == max_tier else ""}><label class="form-check-label" for="tier-{t}">
<b>{t}</b>: {escape(TIER_TEXT[t])}</label></div>"""
        for t in tiers
    )
    host = urlparse(redirect_uri).netloc or urlparse(redirect_uri).scheme
    body = f"""<p><b>{escape(client_name)}</b> <small class="text-muted">(client {escape(client_id)},
returns to {escape(host)})</small> asks to use your Jupyter server <b>{escape(server_label)}</b>
through its MCP endpoint <code>{escape(resource)}</code>.</p>
<p>Signed in as <b>{escape(user)}</b>. Allow it to:</p>
<form method="post" action="{escape(action)}">
<input type="hidden" name="request" value="{escape(request_id)}">
<input type="hidden" name="csrf" value="{escape(csrf)}">
{choices}
<p class="mt-3 text-muted small">The token it gets opens only this endpoint (not JupyterLab or the
Jupyter API), expires soon, and is listed on the hub's token page, where you can revoke it.</p>
<button class="btn btn-primary" type="submit" name="decision" value="allow" id="allow">Allow</button>
<button class="btn btn-secondary" type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>"""
    return _page(hub_base, "Allow access to your notebooks?", body)


def message_page(hub_base: str, title: str, text: str) -> str:
    return _page(hub_base, title, f'<p class="alert alert-warning" id="message">{escape(text)}</p>')
