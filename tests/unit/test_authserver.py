"""The authorization server's pure parts: which server a resource names, tiers, redirect URIs,
signed cookies and consent tokens, and what the state file forgets."""

from __future__ import annotations

import pytest
from mcp_authserver import pages, resources
from mcp_authserver.resources import Server
from mcp_authserver.store import purge

PUBLIC = "https://hub.example.org"


@pytest.mark.parametrize(
    ("resource", "base", "server"),
    [
        (f"{PUBLIC}/user/alice/mcp", "/", Server("alice")),
        (f"{PUBLIC}/user/alice/lab/mcp", "/", Server("alice", "lab")),
        (f"{PUBLIC}/user/a.b%40x.org/mcp", "/", Server("a.b@x.org")),
        (f"{PUBLIC}/jhub/user/alice/mcp", "/jhub/", Server("alice")),
        (f"{PUBLIC}/user/alice/mcp", "/jhub/", None),  # outside the hub's base URL
        ("https://elsewhere.example/user/alice/mcp", "/", None),  # another origin
        (f"{PUBLIC}/hub/api", "/", None),
        (f"{PUBLIC}/user/alice/api/contents", "/", None),  # the Jupyter API is no MCP resource
        (f"{PUBLIC}/user/alice/mcp?x=1", "/", None),
        (None, "/", None),
    ],
)
def test_which_server_a_resource_names(resource: str | None, base: str, server: Server | None) -> None:
    assert resources.server_of(resource, PUBLIC, base) == server


def test_the_canonical_resource_url_round_trips() -> None:
    for server, base in [(Server("alice"), "/"), (Server("a.b@x.org", "lab"), "/jhub/")]:
        assert resources.server_of(resources.resource_url(server, PUBLIC, base), PUBLIC, base) == server


def test_tiers_asked_are_capped_and_imply_the_lower_ones() -> None:
    assert resources.tier_of(["mcp:read", "mcp:execute"], "execute") == "execute"
    assert resources.tier_of(["mcp:execute"], "edit") == "edit"  # the admin's ceiling wins
    assert resources.tier_of(None, "edit") == "edit"
    assert resources.tier_of(["mcp:nonsense"], "read") == "read"
    assert resources.scopes_for("edit") == ["mcp:read", "mcp:edit"]
    assert resources.hub_scopes(Server("alice", "lab"), "read") == ["custom:mcp:read!server=alice/lab"]


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("https://client.example/cb", True),
        ("http://127.0.0.1:1234/callback", True),
        ("http://localhost/cb", True),
        ("http://[::1]:80/cb", True),
        ("http://client.example/cb", False),
        ("cursor://anysphere.cursor-mcp/oauth/callback", False),
        ("https://client.example/cb#frag", False),
    ],
)
def test_redirect_uris_a_client_may_register(uri: str, allowed: bool) -> None:
    assert (resources.redirect_problem(uri) is None) is allowed


def test_an_admin_may_allow_a_custom_scheme() -> None:
    assert resources.redirect_problem("cursor://x/cb", frozenset({"cursor"})) is None


def test_session_cookies_are_signed_and_expire() -> None:
    secret = "s" * 40
    cookie = pages.session_cookie(secret, "a.b@x.org", 60, now=1000)
    assert pages.session_user(secret, cookie, now=1030) == "a.b@x.org"
    assert pages.session_user(secret, cookie, now=1061) is None
    assert pages.session_user("t" * 40, cookie, now=1030) is None
    _, expires, mac = cookie.split(".")
    forged = f"{pages.session_cookie(secret, 'bob', 60, now=1000).split('.')[0]}.{expires}.{mac}"
    assert pages.session_user(secret, forged, now=1030) is None


def test_consent_tokens_bind_the_user_and_the_request() -> None:
    secret = "s" * 40
    token = pages.csrf_token(secret, "alice", "r1")
    assert pages.csrf_ok(secret, "alice", "r1", token)
    assert not pages.csrf_ok(secret, "bob", "r1", token)
    assert not pages.csrf_ok(secret, "alice", "r2", token)
    assert not pages.csrf_ok(secret, "alice", "r1", "")


def test_the_consent_page_escapes_what_a_client_chose() -> None:
    html = pages.consent_page(
        hub_base="/",
        action="/services/mcp-auth/consent",
        request_id="r",
        csrf="c",
        client_name="<script>alert(1)</script>",
        client_id="id",
        redirect_uri="https://x/cb",
        user="alice",
        server_label="alice/",
        resource=f"{PUBLIC}/user/alice/mcp",
        max_tier="edit",
        tiers=["read", "edit"],
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'value="execute"' not in html  # never more than was asked


def test_purge_forgets_what_expired_and_keeps_clients() -> None:
    data = {"clients": {"c": {}}, "codes": {"old": {"expires_at": 5}, "new": {"expires_at": 50}}}
    purge(data, now=10)
    assert data["clients"] == {"c": {}} and list(data["codes"]) == ["new"]
