"""The pure scope check: which hub scopes reach which server."""

from __future__ import annotations

import pytest
from mcp_sidecar.scopes import check_access, server_scope


@pytest.mark.parametrize(
    ("owner", "server", "scopes"),
    [
        ("alice", "", ["access:servers"]),
        ("alice", "", ["access:servers!user=alice"]),
        ("alice", "", ["access:servers!server=alice/"]),
        ("alice", "lab", ["access:servers!server=alice/lab"]),
        ("alice", "lab", ["access:servers!user=alice"]),
        ("alice", "lab", ["access:servers"]),
        ("a.b@x.org", "", ["access:servers!user=a.b@x.org"]),
        ("a.b@x.org", "gpu", ["read:users", "access:servers!server=a.b@x.org/gpu"]),
        ("alice", "", ["read:users!user=alice", "access:servers!user=bob", "access:servers!user=alice"]),
    ],
)
def test_admits(owner: str, server: str, scopes: list[str]) -> None:
    decision = check_access(owner, server, scopes)
    assert decision.allowed, decision.reason
    assert decision.reason.startswith("granted by access:servers")


@pytest.mark.parametrize(
    ("owner", "server", "scopes"),
    [
        ("alice", "", []),
        ("alice", "", ["read:users", "read:users!user=alice", "users:activity!user=alice"]),
        ("alice", "", ["access:servers!user=bob"]),
        # look-alikes: whole-name comparison, never prefixes or suffixes
        ("alice", "", ["access:servers!user=alice2"]),
        ("alice2", "", ["access:servers!user=alice"]),
        ("alice", "", ["access:servers!user=Alice"]),
        ("alice", "", ["access:servers!server=alice2/"]),
        ("a.b@x.org", "", ["access:servers!user=a.b"]),
        ("a.b@x.org", "", ["access:servers!user=aXb@x.org"]),
        # named vs default server
        ("alice", "", ["access:servers!server=alice/lab"]),
        ("alice", "lab", ["access:servers!server=alice/"]),
        ("alice", "lab", ["access:servers!server=alice/lab2"]),
        ("alice", "lab", ["access:servers!server=alice/la"]),
        # other scopes that merely look related
        ("alice", "", ["servers", "admin:servers", "access:services", "access:servers!group=staff"]),
        ("alice", "", ["access:servers!"]),
        ("alice", "", ["access:server!user=alice"]),
    ],
)
def test_refuses(owner: str, server: str, scopes: list[str]) -> None:
    decision = check_access(owner, server, scopes)
    assert not decision.allowed
    assert server_scope(owner, server) in decision.reason


def test_refusal_names_the_needed_scope() -> None:
    assert "access:servers!server=alice/lab" in check_access("alice", "lab", []).reason
    assert "alice's default server" in check_access("alice", "", []).reason
    assert "access:servers!server=alice/" in check_access("alice", "", []).reason
    assert "custom:mcp:read!server=alice/ " in check_access("alice", "", []).reason


@pytest.mark.parametrize(
    ("owner", "server", "scopes", "tier"),
    [
        ("alice", "", ["custom:mcp:read!server=alice/"], "read"),
        ("alice", "", ["custom:mcp:edit!server=alice/", "custom:mcp:read!server=alice/"], "edit"),
        # what the hub lists for an execute token: every tier (subscopes); the highest counts
        ("alice", "", [f"custom:mcp:{t}!server=alice/" for t in ("read", "edit", "execute")], "execute"),
        ("alice", "lab", ["custom:mcp:edit!server=alice/lab"], "edit"),
        ("alice", "lab", ["custom:mcp:read!user=alice"], "read"),
        ("alice", "", ["custom:mcp:execute"], "execute"),
        # an MCP scope elsewhere does not lift the tier here
        ("alice", "", ["custom:mcp:read!server=alice/", "custom:mcp:execute!server=alice/lab"], "read"),
        # both kinds: the MCP scope's cap applies (access:servers would lift nothing the policy caps)
        ("alice", "", ["custom:mcp:read!server=alice/", "access:servers!server=alice/"], "read"),
    ],
)
def test_mcp_scopes_admit_and_cap_the_tier(owner: str, server: str, scopes: list[str], tier: str) -> None:
    decision = check_access(owner, server, scopes, accept_server_access=False)
    assert decision.allowed and decision.tier == tier, decision
    assert decision.reason.startswith(f"granted by custom:mcp:{tier}")


@pytest.mark.parametrize(
    ("owner", "server", "scopes"),
    [
        ("alice", "", ["custom:mcp:execute!server=bob/"]),
        ("alice", "", ["custom:mcp:execute!server=alice/lab"]),
        ("alice", "lab", ["custom:mcp:execute!server=alice/"]),
        ("alice", "", ["custom:mcp:execute!user=alice2"]),
        (
            "alice",
            "",
            ["custom:mcp:admin!server=alice/", "custom:mcp!server=alice/", "custom:mcp:read!group=x"],
        ),
    ],
)
def test_mcp_scopes_of_other_servers_do_not_admit(owner: str, server: str, scopes: list[str]) -> None:
    assert not check_access(owner, server, scopes).allowed


def test_access_servers_admits_uncapped_unless_refused() -> None:
    admitted = check_access("alice", "", ["access:servers!server=alice/"])
    assert admitted.allowed and admitted.tier is None
    refused = check_access("alice", "", ["access:servers!server=alice/"], accept_server_access=False)
    assert not refused.allowed
    assert "acceptServerAccess: false" in refused.reason and "custom:mcp:read!server=alice/" in refused.reason
    # refused outright: the hint does not offer access:servers
    assert "access:servers!server" not in check_access("alice", "", [], accept_server_access=False).reason


def test_scope_spelling_matches_the_operator() -> None:
    """The sidecar and the operator are separate packages: one spelling, checked here."""
    from mcp_operator import endpoint
    from mcp_sidecar import scopes

    assert scopes.TIERS == endpoint.MCP_TIERS and scopes.MCP_PREFIX == endpoint.MCP_SCOPE_PREFIX
    assert set(endpoint.CUSTOM_SCOPES) == {scopes.MCP_PREFIX + t for t in scopes.TIERS}
    for tier in scopes.TIERS:
        assert scopes.mcp_scope("a", "s", tier) == endpoint.mcp_scope("a", "s", tier)
    assert set(scopes.TIER_MODE.values()) == set(endpoint.MODE_TIER)


def test_ignores_non_strings_and_whitespace() -> None:
    assert check_access("alice", "", [None, 3, " access:servers!user=alice "]).allowed  # type: ignore[list-item]
