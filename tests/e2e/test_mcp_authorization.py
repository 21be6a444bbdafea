"""MCP authorization in local mode: a client given only ``http://<proxy>/user/<name>/mcp`` logs in
through the hub and works.

Real parts throughout: the demo's JupyterHub, proxy, sidecars and authorization server; the MCP
SDK's own OAuth client (``OAuthClientProvider``, dynamic registration); a headless Debian Chromium
driven by Playwright for the person at the hub's login page and the consent page. The bad-input
tests speak OAuth to the authorization server with plain HTTP, a code obtained through the same
browser, and check the RFC's error codes and what the hub then says about the tokens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest

from tests.harness.demo import DemoProcess, User
from tests.harness.mcp import call, fails, mcp_remote_client, text
from tests.harness.oauth import Login, Person, Redirect, chromium, loopback_redirect, oauth_mcp_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as running:
        yield running


@pytest.fixture
async def redirect() -> AsyncIterator[Redirect]:
    async with loopback_redirect() as listener:
        yield listener


def person(demo: DemoProcess, browser: Any, redirect: Redirect, user: str, **kw: Any) -> Person:
    return Person(browser, redirect, user, demo.password, **kw)


async def hub_scopes(demo: DemoProcess, token: str) -> list[str] | None:
    """What the hub says a token may do (None: the hub does not know it: revoked or expired)."""
    async with httpx.AsyncClient(timeout=30) as http:
        reply = await http.get(f"{demo.hub_api}/user", headers={"Authorization": f"token {token}"})
    if reply.status_code in (401, 403):
        return None
    assert reply.status_code == 200, reply.text
    scopes = reply.json()["scopes"]
    # Besides the hub's identify scopes (read:users:name!user=... and the like), nothing that opens
    # anything: no access:servers, no tokens, no admin.
    assert not [s for s in scopes if s.startswith(("access:", "tokens", "admin", "servers"))], scopes
    return sorted(s for s in scopes if s.startswith("custom:"))


async def test_the_sdk_client_connects_with_only_the_url_and_runs_a_cell(
    demo: DemoProcess, alice: User, browser: Any, redirect: Redirect
) -> None:
    login = Login(person(demo, browser, redirect, "alice"))
    async with oauth_mcp_client(alice.url, login, client_name="Pytest Agent") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"create_notebook", "insert_and_execute", "read_notebook"} <= tools
        await call(client, "create_notebook", path="by-url.ipynb")
        result = await call(client, "insert_and_execute", path="by-url.ipynb", source="print(6 * 7)")
        assert "42" in text(result)

    # The browser was sent to the hub's login and to our consent page, naming client and server.
    assert login.authorization_urls and login.authorization_urls[0].startswith(
        f"{demo.public_url}/services/mcp-auth/authorize?"
    )
    consent = login.person.pages_seen[0]
    assert "Pytest Agent" in consent and "alice/" in consent and alice.url in consent
    tokens = login.storage.tokens
    assert tokens is not None and tokens.refresh_token and tokens.expires_in == 3600
    assert tokens.scope == "mcp:read mcp:edit mcp:execute"
    # A hub token of alice's with only the MCP scope on her one server (the hub adds subscopes).
    assert await hub_scopes(demo, tokens.access_token) == [
        "custom:mcp:edit!server=alice/",
        "custom:mcp:execute!server=alice/",
        "custom:mcp:read!server=alice/",
    ]
    async with httpx.AsyncClient(timeout=30) as http:
        bearer = {"Authorization": f"Bearer {tokens.access_token}"}
        # It does not open the Jupyter server's own API ...
        assert (await http.get(f"{alice.server_url}api/contents", headers=bearer)).status_code == 403
        # ... and it is noted with the client's name on alice's token page (the hub's token list).
        listed = await http.get(f"{demo.hub_api}/users/alice/tokens", headers=demo.service_headers)
        notes = [t["note"] for t in listed.json()["api_tokens"]]
        assert any("Pytest Agent" in (n or "") for n in notes), notes


async def test_the_user_may_grant_less_than_asked(
    demo: DemoProcess, alice: User, browser: Any, redirect: Redirect
) -> None:
    login = Login(person(demo, browser, redirect, "alice", tier="read"))
    async with oauth_mcp_client(alice.url, login) as client:
        await call(client, "list_files")
        refused = await fails(client, "create_notebook", path="not-with-read.ipynb")
        assert "read" in refused
    assert login.storage.tokens is not None and login.storage.tokens.scope == "mcp:read"
    assert await hub_scopes(demo, login.storage.tokens.access_token) == ["custom:mcp:read!server=alice/"]


async def test_bob_cannot_consent_to_alices_server(
    demo: DemoProcess, alice: User, browser: Any, redirect: Redirect
) -> None:
    login = Login(person(demo, browser, redirect, "bob"))
    with pytest.raises(BaseException) as refused:  # the SDK client gives up: no code came back
        async with oauth_mcp_client(alice.url, login) as client:
            await client.list_tools()
    assert "no authorization" in repr(refused.value) or "PermissionError" in repr(refused.value)
    assert len(login.person.pages_seen) == 1
    page = login.person.pages_seen[0]
    assert "Not your server" in page and "signed in as bob" in page, page
    assert not login.person.answers  # nothing went back to the client: no code, no redirect


# --- bad input, spoken to the authorization server directly ----------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


class RawClient:
    """A registered OAuth client driven by hand (httpx), for the requests the SDK never sends."""

    def __init__(self, demo: DemoProcess, redirect: Redirect) -> None:
        self.base = f"{demo.public_url}/services/mcp-auth"
        self.redirect = redirect
        self.http = httpx.AsyncClient(timeout=30)
        self.client_id = ""
        self.client_secret = ""

    async def register(self, redirect_uris: list[str] | None = None) -> httpx.Response:
        reply = await self.http.post(
            f"{self.base}/register",
            json={
                "client_name": "raw client",
                "redirect_uris": redirect_uris or [self.redirect.uri],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            },
        )
        if reply.status_code == 201:
            self.client_id = reply.json()["client_id"]
            self.client_secret = reply.json()["client_secret"]
        return reply

    def authorize_url(self, challenge: str, resource: str, **extra: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect.uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "s1",
            "scope": "mcp:execute",
            "resource": resource,
            **extra,
        }
        return f"{self.base}/authorize?{urlencode({k: v for k, v in query.items() if v})}"

    async def token(self, **form: str) -> httpx.Response:
        body = {"client_id": self.client_id, "client_secret": self.client_secret, **form}
        return await self.http.post(f"{self.base}/token", data=body)

    async def code(self, who: Person, resource: str) -> tuple[str, str]:
        verifier, challenge = pkce()
        result = await who.authorize(self.authorize_url(challenge, resource))
        assert result is not None, who.pages_seen
        return result.code, verifier

    async def exchange(self, code: str, verifier: str, redirect_uri: str = "") -> httpx.Response:
        return await self.token(
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
            redirect_uri=redirect_uri or self.redirect.uri,
        )


@pytest.fixture
async def raw(demo: DemoProcess, redirect: Redirect) -> AsyncIterator[RawClient]:
    client = RawClient(demo, redirect)
    assert (await client.register()).status_code == 201
    try:
        yield client
    finally:
        await client.http.aclose()


def oauth_error(reply: httpx.Response, status: int = 400) -> str:
    assert reply.status_code == status, reply.text
    return str(reply.json()["error"])


async def test_wrong_pkce_verifier_is_invalid_grant_and_burns_the_code(
    demo: DemoProcess, alice: User, browser: Any, raw: RawClient
) -> None:
    code, verifier = await raw.code(person(demo, browser, raw.redirect, "alice"), alice.url)
    assert oauth_error(await raw.exchange(code, "x" * 50)) == "invalid_grant"
    # Single use: the right verifier after a wrong one gets nothing either.
    assert oauth_error(await raw.exchange(code, verifier)) == "invalid_grant"


async def test_a_replayed_code_is_refused_and_revokes_what_it_gave(
    demo: DemoProcess, alice: User, browser: Any, raw: RawClient
) -> None:
    code, verifier = await raw.code(person(demo, browser, raw.redirect, "alice"), alice.url)
    first = await raw.exchange(code, verifier)
    assert first.status_code == 200, first.text
    access = first.json()["access_token"]
    assert await hub_scopes(demo, access) is not None
    assert oauth_error(await raw.exchange(code, verifier)) == "invalid_grant"
    assert await hub_scopes(demo, access) is None  # RFC 6749 §4.1.2: revoked at the hub


async def test_a_redirect_uri_that_does_not_match_is_refused(
    demo: DemoProcess, alice: User, browser: Any, raw: RawClient
) -> None:
    code, verifier = await raw.code(person(demo, browser, raw.redirect, "alice"), alice.url)
    # The SDK's token handler answers invalid_request here (RFC 6749 §5.2 suggests invalid_grant).
    reply = await raw.exchange(code, verifier, redirect_uri="http://127.0.0.1:1/elsewhere")
    assert oauth_error(reply) in ("invalid_request", "invalid_grant")


async def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_grant(
    demo: DemoProcess, alice: User, browser: Any, raw: RawClient
) -> None:
    code, verifier = await raw.code(person(demo, browser, raw.redirect, "alice"), alice.url)
    issued = (await raw.exchange(code, verifier)).json()
    renewed = await raw.token(grant_type="refresh_token", refresh_token=issued["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    assert fresh["refresh_token"] != issued["refresh_token"]
    assert fresh["access_token"] != issued["access_token"]
    assert await hub_scopes(demo, issued["access_token"]) is None  # the old one is revoked on rotation
    assert await hub_scopes(demo, fresh["access_token"]) is not None
    # The rotated-away refresh token again: refused, and the whole grant goes.
    again = await raw.token(grant_type="refresh_token", refresh_token=issued["refresh_token"])
    assert oauth_error(again) == "invalid_grant"
    assert await hub_scopes(demo, fresh["access_token"]) is None
    after = await raw.token(grant_type="refresh_token", refresh_token=fresh["refresh_token"])
    assert oauth_error(after) == "invalid_grant"


async def test_revocation_kills_the_hub_token(
    demo: DemoProcess, alice: User, browser: Any, raw: RawClient
) -> None:
    code, verifier = await raw.code(person(demo, browser, raw.redirect, "alice"), alice.url)
    issued = (await raw.exchange(code, verifier)).json()
    reply = await raw.http.post(
        f"{raw.base}/revoke",
        data={
            "token": issued["refresh_token"],
            "client_id": raw.client_id,
            "client_secret": raw.client_secret,
        },
    )
    assert reply.status_code == 200, reply.text
    assert await hub_scopes(demo, issued["access_token"]) is None
    refused = await raw.token(grant_type="refresh_token", refresh_token=issued["refresh_token"])
    assert oauth_error(refused) == "invalid_grant"


async def test_a_resource_that_is_no_users_server_is_invalid_target(
    demo: DemoProcess, raw: RawClient
) -> None:
    _, challenge = pkce()
    for resource in (f"{demo.public_url}/hub/api", "https://elsewhere.example/user/alice/mcp"):
        reply = await raw.http.get(raw.authorize_url(challenge, resource))
        assert reply.status_code == 302, reply.text
        assert reply.headers["location"].startswith(raw.redirect.uri)
        assert "error=invalid_target" in reply.headers["location"]


async def test_missing_pkce_is_refused(demo: DemoProcess, alice: User, raw: RawClient) -> None:
    reply = await raw.http.get(raw.authorize_url("", alice.url))
    assert reply.status_code == 302
    assert (
        "error=invalid_request" in reply.headers["location"] and "code_challenge" in reply.headers["location"]
    )


async def test_a_redirect_uri_off_loopback_over_http_cannot_be_registered(
    demo: DemoProcess, redirect: Redirect
) -> None:
    client = RawClient(demo, redirect)
    try:
        reply = await client.register(["http://attacker.example/callback"])
        assert oauth_error(reply) == "invalid_redirect_uri"
    finally:
        await client.http.aclose()


async def test_a_forged_consent_form_is_refused(
    demo: DemoProcess, alice: User, browser: Any, raw: RawClient
) -> None:
    """CSRF: a POST to the consent endpoint without the page's token is refused, even from a
    browser that is signed in (its session cookie rides along)."""
    _, challenge = pkce()
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(raw.authorize_url(challenge, alice.url))
        await page.fill('input[name="username"]', "alice")
        await page.fill('input[name="password"]', demo.password)
        await page.click("#login_submit")
        await page.wait_for_url("**/consent?**")
        request_id = await page.input_value('input[name="request"]')
        forged = await context.request.post(
            f"{raw.base}/consent",
            form={"request": request_id, "csrf": "0" * 64, "decision": "allow", "tier": "execute"},
            max_redirects=0,
        )
        assert forged.status == 403
        assert "CSRF" in await forged.text()
        assert not raw.redirect.landed  # no code went anywhere
    finally:
        await context.close()


async def test_discovery_documents_are_where_clients_look(demo: DemoProcess, alice: User, bob: User) -> None:
    """The 401's resource_metadata URL (the sidecar), the RFC 9728 path at the hub's origin and the
    RFC 8414 path-aware metadata (both routed through the proxy to the authorization server)."""
    issuer = f"{demo.public_url}/services/mcp-auth"
    async with httpx.AsyncClient(timeout=30) as http:
        challenge = (await http.post(alice.url, json={})).headers["www-authenticate"]
        assert f'resource_metadata="{alice.url}/.well-known/oauth-protected-resource"' in challenge
        from_sidecar = (await http.get(f"{alice.url}/.well-known/oauth-protected-resource")).json()
        at_origin = (
            await http.get(f"{demo.public_url}/.well-known/oauth-protected-resource/user/bob/mcp")
        ).json()
        unknown = await http.get(f"{demo.public_url}/.well-known/oauth-protected-resource/hub/api")
        metadata = (
            await http.get(f"{demo.public_url}/.well-known/oauth-authorization-server/services/mcp-auth")
        ).json()
    assert from_sidecar["resource"] == alice.url and from_sidecar["authorization_servers"] == [issuer]
    assert at_origin["resource"] == bob.url and at_origin["authorization_servers"] == [issuer]
    assert unknown.status_code == 404
    assert metadata["issuer"] == issuer
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert {"registration_endpoint", "revocation_endpoint"} <= set(metadata)


async def test_mcp_remote_with_no_headers_logs_in_through_the_hub(
    demo: DemoProcess, alice: User, browser: Any, tmp_path: Path
) -> None:
    """``npx mcp-remote <url>`` with no token at all: it discovers the authorization server,
    registers, prints the authorization URL (no desktop browser here) and waits on its own loopback
    callback; the browser step is done by Chromium as above."""
    entry = {"command": "npx", "args": ["-y", "mcp-remote", alice.url, "--allow-http"]}

    async def agent() -> str:
        async with mcp_remote_client(entry, tmp_path) as client:
            await call(client, "create_notebook", path="via-mcp-remote.ipynb")
            result = await call(
                client, "insert_and_execute", path="via-mcp-remote.ipynb", source="print(2**10)"
            )
            return text(result)

    running = asyncio.create_task(agent())
    log = tmp_path / "mcp-remote.log"
    deadline = time.monotonic() + 120
    url = None
    while url is None:
        assert not running.done(), running.exception() if running.done() else ""
        assert time.monotonic() < deadline, log.read_text() if log.exists() else "no mcp-remote log"
        found = re.search(
            r"(http://\S+/services/mcp-auth/authorize\?\S+)", log.read_text() if log.exists() else ""
        )
        url = found.group(1) if found else None
        await asyncio.sleep(0.2)
    callback = parse_qs(urlparse(url).query)["redirect_uri"][0]
    assert urlparse(callback).hostname in ("localhost", "127.0.0.1")
    someone = Person(browser, Redirect(callback), "alice", demo.password)
    await someone.authorize(url)  # lands on mcp-remote's own callback server, which takes the code
    assert "1024" in await asyncio.wait_for(running, 120)


async def test_an_unknown_client_is_refused(demo: DemoProcess, alice: User, raw: RawClient) -> None:
    _, challenge = pkce()
    raw.client_id = "never-registered"
    reply = await raw.http.get(raw.authorize_url(challenge, alice.url))
    # No registered redirect URI to trust: the answer goes to the browser, not to a redirect.
    assert oauth_error(reply) == "invalid_request" and "not found" in reply.json()["error_description"]
    token = await raw.token(grant_type="authorization_code", code="x", code_verifier="y" * 50)
    assert oauth_error(token, 401) == "invalid_client"


def audit_lines(demo: DemoProcess) -> list[dict[str, Any]]:
    """The authorization server's audit lines (its stdout lands in the hub's log)."""
    import json

    lines = (demo.state / "jupyterhub.log").read_text(errors="replace").splitlines()
    return [json.loads(line.split(" INFO ", 1)[1]) for line in lines if "mcp_authserver.audit INFO" in line]


async def test_refusals_are_audited_with_the_rfc_error(
    demo: DemoProcess, alice: User, browser: Any, raw: RawClient
) -> None:
    code, _verifier = await raw.code(person(demo, browser, raw.redirect, "alice"), alice.url)
    before = len(audit_lines(demo))
    assert oauth_error(await raw.exchange(code, "z" * 50)) == "invalid_grant"
    deadline = time.monotonic() + 10
    while not [a for a in audit_lines(demo)[before:] if a.get("error") == "invalid_grant"]:
        assert time.monotonic() < deadline, audit_lines(demo)[before:]
        await asyncio.sleep(0.2)
    refused = next(a for a in audit_lines(demo)[before:] if a.get("error") == "invalid_grant")
    assert refused["event"] == "token" and refused["outcome"] == "refused" and refused["status"] == 400
    assert code not in str(audit_lines(demo))  # no secret in the audit


def test_the_demo_prints_the_url_to_add_per_user(demo: DemoProcess, alice: User, bob: User) -> None:
    printed = demo.text()
    for user in (alice, bob):
        assert f"add by URL:   {user.url}   (a client with MCP authorization" in printed, printed
        assert f"(custom:mcp:execute!server={user.name}/ only, expires" in printed


async def test_grants_survive_a_restart_of_the_authorization_server(
    demo: DemoProcess, alice: User, browser: Any, raw: RawClient
) -> None:
    """The state is on disk: after the service dies (the hub restarts managed services), the
    registered client and its refresh grant still work."""
    code, verifier = await raw.code(person(demo, browser, raw.redirect, "alice"), alice.url)
    issued = (await raw.exchange(code, verifier)).json()
    (server,) = [p for p in demo.tree() if any("jupyterhub-mcp-authserver" in part for part in p.cmdline())]
    server.kill()  # this test's own demo tree, by pid (the hub reaps it: not our child to wait for)
    deadline = time.monotonic() + 120
    while True:  # the hub notices and starts it again
        with contextlib.suppress(httpx.TransportError):
            if (await raw.http.get(f"{raw.base}/")).status_code == 200:
                break
        assert time.monotonic() < deadline, "the hub did not restart the authorization server"
        await asyncio.sleep(0.5)
    renewed = await raw.token(grant_type="refresh_token", refresh_token=issued["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert await hub_scopes(demo, renewed.json()["access_token"]) == [
        "custom:mcp:edit!server=alice/",
        "custom:mcp:execute!server=alice/",
        "custom:mcp:read!server=alice/",
    ]
