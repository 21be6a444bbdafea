"""MCP authorization from the client's side, with nothing written here standing in for the parts:
the MCP SDK's own OAuth client (``OAuthClientProvider``, dynamic registration) and a real headless
Chromium (Debian's ``chromium``, driven by Playwright) for the person who logs in at the hub and
answers the consent page.

The client's redirect URI is a loopback listener of its own (aiohttp on a free port), as a
native client's is (RFC 8252 §7.3): the browser lands there and the query goes back to the SDK.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)


def chromium_path() -> str:
    """Debian's chromium (``make browser`` installs it); the tests skip with the reason otherwise."""
    found = shutil.which("chromium")
    if not found:
        pytest.skip("Debian's chromium is not installed (run `make browser`: apt-get install -y chromium)")
    return found


@dataclass
class MemoryStorage(TokenStorage):
    tokens: OAuthToken | None = None
    client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class Redirect:
    """The client's loopback redirect listener: remembers the query of what landed."""

    uri: str
    landed: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def loopback_redirect() -> AsyncIterator[Redirect]:
    from aiohttp import web

    from tests.harness.paths import free_port

    port = free_port()
    redirect = Redirect(f"http://127.0.0.1:{port}/callback")

    async def callback(request: web.Request) -> web.Response:
        redirect.landed.update(url=str(request.url), query=dict(request.query))
        return web.Response(text="You may close this window.")

    app = web.Application()
    app.router.add_get("/callback", callback)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield redirect
    finally:
        await runner.cleanup()


@dataclass
class Person:
    """Someone at a browser: logs in at the hub's login page when asked, then answers the consent
    page (``tier`` picks one of the offered tiers; ``allow`` False presses Deny)."""

    browser: Any  # playwright Browser
    redirect: Redirect
    user: str
    password: str
    tier: str | None = None
    allow: bool = True
    pages_seen: list[str] = field(default_factory=list)
    answers: list[dict[str, str]] = field(default_factory=list)  # what the client's redirect got

    async def authorize(self, authorization_url: str) -> AuthorizationCodeResult | None:
        """Follows the authorization URL to the end; the redirect's code and state, or None when
        no redirect to the client came (the page said no, e.g. not the user's server)."""
        context = await self.browser.new_context()
        page = await context.new_page()
        self.redirect.landed.clear()
        landed = self.redirect.landed
        try:
            await page.goto(authorization_url)
            if "/hub/login" in page.url:
                await page.fill('input[name="username"]', self.user)
                await page.fill('input[name="password"]', self.password)
                await page.click("#login_submit")
                await page.wait_for_url("**/consent?**")
            self.pages_seen.append(f"{page.url}: {(await page.inner_text('body'))[:300]}")
            if await page.locator("#allow").count() == 0:
                return None  # a refusal page: no form to answer
            if self.tier:
                await page.check(f"#tier-{self.tier}")
            await page.click("#allow" if self.allow else "#deny")
            await page.wait_for_url(self.redirect.uri + "**")
        finally:
            await context.close()
        query = landed.get("query") or {}
        self.answers.append(query)
        if "code" not in query:
            return None
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"))


@dataclass
class Login:
    """One OAuth client's view: what the SDK asked the browser to open, and its stored tokens."""

    person: Person
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    authorization_urls: list[str] = field(default_factory=list)

    def provider(self, url: str, client_name: str = "pytest MCP client") -> OAuthClientProvider:
        pending: dict[str, AuthorizationCodeResult | None] = {}

        async def redirect_handler(authorization_url: str) -> None:
            self.authorization_urls.append(authorization_url)
            pending["result"] = await self.person.authorize(authorization_url)

        async def callback_handler() -> AuthorizationCodeResult:
            result = pending.pop("result", None)
            if result is None:
                raise PermissionError(f"no authorization for {url}: {self.person.pages_seen}")
            return result

        metadata = OAuthClientMetadata(
            client_name=client_name,
            redirect_uris=[self.person.redirect.uri],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        )
        return OAuthClientProvider(url, metadata, self.storage, redirect_handler, callback_handler)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    path = chromium_path()
    async with async_playwright() as p:
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        browser = await p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def oauth_mcp_client(
    url: str, login: Login, client_name: str = "pytest MCP client"
) -> AsyncIterator[Client]:
    """The SDK client given only the URL: discovery, registration, login and consent on the fly."""
    http = create_mcp_http_client(auth=login.provider(url, client_name))
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            yield client
