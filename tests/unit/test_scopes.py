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
    assert "access:servers!server=alice/ " in check_access("alice", "", []).reason


def test_ignores_non_strings_and_whitespace() -> None:
    assert check_access("alice", "", [None, 3, " access:servers!user=alice "]).allowed  # type: ignore[list-item]
