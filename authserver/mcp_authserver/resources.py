"""Pure: which server a resource indicator (RFC 8707) names, the tiers behind OAuth scopes, which
redirect URIs a client may use. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from mcp_operator import endpoint

from .config import TIERS

SCOPE_PREFIX = "mcp:"  # OAuth scopes mcp:read, mcp:edit, mcp:execute (the sidecar's metadata lists them)
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_SERVER_PATH = re.compile(r"^user/([^/]+)/(?:([^/]+)/)?mcp/?$")


@dataclass(frozen=True)
class Server:
    """One user's server, as named by a resource indicator."""

    user: str
    name: str = ""  # "" = the default server

    @property
    def label(self) -> str:
        return f"{self.user}/{self.name}"


def server_of(resource: str | None, public_url: str, hub_base_url: str = "/") -> Server | None:
    """The server whose MCP endpoint ``resource`` is (``<public>/<base>user/<name>[/<server>]/mcp``),
    or None when it names nothing of this hub."""
    if not resource:
        return None
    parsed = urlparse(resource)
    origin = urlparse(public_url)
    if (parsed.scheme, parsed.netloc) != (origin.scheme, origin.netloc) or parsed.query or parsed.fragment:
        return None
    base = "/" + hub_base_url.strip("/") + "/" if hub_base_url.strip("/") else "/"
    if not parsed.path.startswith(base):
        return None
    match = _SERVER_PATH.match(parsed.path[len(base) :])
    if match is None:
        return None
    return Server(unquote(match.group(1)), unquote(match.group(2) or ""))


def resource_url(server: Server, public_url: str, hub_base_url: str = "/") -> str:
    """The canonical resource URL of a server's endpoint (what its sidecar names in its metadata)."""
    path = endpoint.mcp_path(server.user, server.name)
    base = hub_base_url.rstrip("/")
    return public_url + base + path


def tier_of(scopes: list[str] | None, ceiling: str) -> str:
    """The highest tier the scopes ask for, never above ``ceiling``; no MCP scope: the ceiling."""
    asked = [s.removeprefix(SCOPE_PREFIX) for s in scopes or [] if s.startswith(SCOPE_PREFIX)]
    tiers = [t for t in asked if t in TIERS]
    wanted = max(tiers, key=TIERS.index) if tiers else ceiling
    return min(wanted, ceiling, key=TIERS.index)


def tiers_up_to(tier: str) -> list[str]:
    return list(TIERS[: TIERS.index(tier) + 1])


def scopes_for(tier: str) -> list[str]:
    """The OAuth scopes a grant of ``tier`` holds (edit includes read, as the hub's subscopes do)."""
    return [SCOPE_PREFIX + t for t in tiers_up_to(tier)]


def hub_scopes(server: Server, tier: str) -> list[str]:
    """What the minted hub token carries: only the MCP scope of that tier on that one server."""
    return [endpoint.mcp_scope(server.user, server.name, tier)]


def redirect_problem(uri: str, extra_schemes: frozenset[str] = frozenset()) -> str | None:
    """Why a client may not register this redirect URI, or None when it may."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if parsed.fragment:
        return f"{uri}: a redirect URI must not have a fragment"
    if scheme == "https" and parsed.hostname:
        return None
    if scheme == "http" and parsed.hostname in LOOPBACK:
        return None
    if scheme in extra_schemes:
        return None
    if scheme == "http":
        return f"{uri}: plain http is allowed only to a loopback address (localhost, 127.0.0.1, [::1])"
    return f"{uri}: scheme {scheme or '(none)'!r} is not allowed here (https, http to loopback)"
