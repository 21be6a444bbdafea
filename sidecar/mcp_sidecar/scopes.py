"""Does a hub token's scope list admit it to *this* server, and up to which tool tier? Pure: no I/O.

Two kinds of scope admit, each as ``<scope>``, ``<scope>!user=<owner>`` or
``<scope>!server=<owner>/<server name>`` (the default server is ``<owner>/``):

- the MCP custom scopes ``custom:mcp:read|edit|execute`` (defined in the hub's
  ``c.JupyterHub.custom_scopes``): the tool tier is capped at the highest one held. Everything
  this product mints carries only these, so it opens MCP and not the Jupyter server itself.
- ``access:servers``, the rule the single-user server applies
  (jupyterhub.services.auth.HubAuth.access_scopes): no tier cap (the token already opens the
  whole server), unless the policy refuses it (``accept_server_access=False``).

Filters are compared whole, never as prefixes, so ``alice2`` never matches ``alice``.
``!group=...`` filters are not resolved here (the hub's own check does not resolve them either):
they do not admit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ACCESS = "access:servers"
MCP_PREFIX = "custom:mcp:"
# Lowest first: a tier admits every tool of the tiers before it (the policy's modes, in order).
TIERS = ("read", "edit", "execute")
TIER_MODE = {"read": "read-only", "edit": "edit", "execute": "execute"}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # says which scope admitted, or which one is needed; never contains a token
    # The highest tool tier the token holds here; None: no cap from the token (access:servers).
    tier: str | None = None


def _forms(base: str, owner: str, server_name: str) -> tuple[str, ...]:
    """Every spelling of ``base`` that covers this server, broadest first."""
    return (base, f"{base}!user={owner}", f"{base}!server={owner}/{server_name}")


def server_scope(owner: str, server_name: str = "") -> str:
    """The narrowest scope that reaches the whole server, e.g. ``access:servers!server=alice/lab``."""
    return f"{ACCESS}!server={owner}/{server_name}"


def mcp_scope(owner: str, server_name: str = "", tier: str = "execute") -> str:
    """The narrowest MCP scope of a tier on this server, e.g. ``custom:mcp:read!server=alice/``."""
    return f"{MCP_PREFIX}{tier}!server={owner}/{server_name}"


def required_scopes(owner: str, server_name: str = "") -> tuple[str, ...]:
    """Every access:servers scope that admits, broadest first."""
    return _forms(ACCESS, owner, server_name)


def held_tier(owner: str, server_name: str, held: set[str]) -> str | None:
    """The highest MCP tier among ``held`` that covers this server, None when there is none."""
    covered = [t for t in TIERS if any(s in held for s in _forms(MCP_PREFIX + t, owner, server_name))]
    return covered[-1] if covered else None


def check_access(
    owner: str, server_name: str, scopes: Iterable[str], *, accept_server_access: bool = True
) -> Decision:
    """Decide from the token's expanded scopes (as ``GET /hub/api/user`` returns them)."""
    held = {s.strip() for s in scopes if isinstance(s, str)}
    tier = held_tier(owner, server_name, held)
    if tier is not None:
        return Decision(True, f"granted by {mcp_scope(owner, server_name, tier)} (tools up to {tier})", tier)
    label = f"{owner}/{server_name}" if server_name else f"{owner}'s default server"
    needed = f"it needs the scope {mcp_scope(owner, server_name, 'read')} (or edit, or execute)"
    access = next((s for s in required_scopes(owner, server_name) if s in held), None)
    if access is not None:
        if accept_server_access:
            return Decision(True, f"granted by {access}")
        return Decision(
            False,
            f"this token holds {access}, but this server's MCP policy does not accept access:servers "
            f"tokens (spec.auth.acceptServerAccess: false): {needed}; ask your hub for an MCP token",
        )
    also = f", or {server_scope(owner, server_name)}" if accept_server_access else ""
    return Decision(False, f"this token may not use MCP on {label}: {needed}{also}")
