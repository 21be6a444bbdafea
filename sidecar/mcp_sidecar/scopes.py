"""Does a hub token's scope list grant access to *this* server? Pure: no I/O.

The same rule the single-user server applies (jupyterhub.services.auth.HubAuth.access_scopes):
any one of ``access:servers``, ``access:servers!user=<owner>`` or
``access:servers!server=<owner>/<server name>`` (the default server is ``<owner>/``) admits.
Filters are compared whole, never as prefixes, so ``alice2`` never matches ``alice``.
``access:servers!group=...`` is not resolved here (the hub's own check does not resolve it
either): it does not admit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ACCESS = "access:servers"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # says which scope admitted, or which one is needed; never contains a token


def server_scope(owner: str, server_name: str = "") -> str:
    """The narrowest scope that reaches this server, e.g. ``access:servers!server=alice/lab``."""
    return f"{ACCESS}!server={owner}/{server_name}"


def required_scopes(owner: str, server_name: str = "") -> tuple[str, ...]:
    """Every scope that admits, broadest first."""
    return (ACCESS, f"{ACCESS}!user={owner}", server_scope(owner, server_name))


def check_access(owner: str, server_name: str, scopes: Iterable[str]) -> Decision:
    """Decide from the token's expanded scopes (as ``GET /hub/api/user`` returns them)."""
    held = {s.strip() for s in scopes if isinstance(s, str)}
    for scope in required_scopes(owner, server_name):
        if scope in held:
            return Decision(True, f"granted by {scope}")
    label = f"{owner}/{server_name}" if server_name else f"{owner}'s default server"
    return Decision(
        False,
        f"this token may not access {label}: it needs the scope {server_scope(owner, server_name)} "
        f"(or {ACCESS}!user={owner}, or {ACCESS})",
    )
