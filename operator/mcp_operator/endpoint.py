"""The endpoint contract, pure: where a user's MCP endpoint is, which token scopes reach it (and the hub's
custom-scope configuration that defines them), and
the client configurations a user is handed. The one place these are spelled.

Used by the operator (the Ingress path, the token Secret), by local mode (the proxy route, the
printed endpoints, ``mcp.json``) and by the tests. The sidecar serves the same path from its own
environment: ``JUPYTERHUB_SERVICE_PREFIX`` + ``mcp`` (``mcp_sidecar.config.Settings.mcp_path``).

No I/O and no third-party imports here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

# The last path segment of every MCP endpoint, under the server's prefix.
MCP_SEGMENT = "mcp"


def server_prefix(user: str, server_name: str = "") -> str:
    """`/user/<name>/` (`/user/<name>/<server>/`), escaped the way the hub escapes prefixes."""
    prefix = f"/user/{quote(user, safe='@~')}/"
    if server_name:
        prefix += f"{quote(server_name, safe='@~')}/"
    return prefix


def mcp_path_under(prefix: str) -> str:
    """The MCP path under a server prefix as the hub hands it (`JUPYTERHUB_SERVICE_PREFIX`):
    `/user/alice/` -> `/user/alice/mcp`."""
    return prefix.rstrip("/") + "/" + MCP_SEGMENT


def mcp_path(user: str, server_name: str = "") -> str:
    """`/user/<name>/mcp` (`/user/<name>/<server>/mcp`), escaped the way the hub escapes prefixes."""
    return mcp_path_under(server_prefix(user, server_name))


# For humans (chart NOTES, docs): the path with placeholders, unescaped.
MCP_PATH_TEMPLATE = mcp_path_under("/user/<name>/")
NAMED_MCP_PATH_TEMPLATE = mcp_path_under("/user/<name>/<server name>/")


def endpoint_url(
    user: str,
    server_name: str,
    *,
    route_host: str | None,
    hub_public_url: str | None,
    path: str | None = None,
) -> str:
    """The user's MCP endpoint: on the policy's route host when there is one, else on the hub's
    public URL (local mode: the proxy's). Neither known: the path alone, still right on whatever
    host serves the hub. `path`: the pod's own (`<JUPYTERHUB_SERVICE_PREFIX>mcp`, with the hub's
    base URL in it); default `/user/<name>/mcp`.

    A public URL keeps its path: when the endpoint path already starts with it (the hub's base URL,
    `https://hub.example.org/jhub` + `/jhub/user/alice/mcp`) it is not doubled, otherwise it is put
    in front (a front proxy that strips a prefix of its own)."""
    path = path or mcp_path(user, server_name)
    if route_host:
        base = route_host if "://" in route_host else f"https://{route_host}"
    elif hub_public_url:
        base = hub_public_url
    else:
        return path
    scheme, sep, rest = base.rstrip("/").partition("://")
    host, slash, base_path = rest.partition("/")
    base_path = slash + base_path
    origin = f"{scheme}{sep}{host}"
    if base_path and (path == base_path or path.startswith(base_path + "/")):
        return origin + path
    return origin + base_path + path


# JupyterHub custom scopes for MCP, one per tool tier: a token holding only these opens the MCP
# endpoint and nothing else (the Jupyter server itself wants access:servers). edit and execute
# imply read through subscopes, so the hub's own answer lists every tier a token reaches.
MCP_SCOPE_PREFIX = "custom:mcp:"
MCP_TIERS = ("read", "edit", "execute")
CUSTOM_SCOPES: dict[str, dict[str, Any]] = {
    "custom:mcp:read": {"description": "Read notebooks and files through the MCP endpoint"},
    "custom:mcp:edit": {
        "description": "Read and edit notebooks and files through the MCP endpoint",
        "subscopes": ["custom:mcp:read"],
    },
    "custom:mcp:execute": {
        "description": "Read, edit and run code through the MCP endpoint",
        "subscopes": ["custom:mcp:edit"],
    },
}
# The policy's tool mode -> the tier an MCP token needs for it (the narrowest that suffices).
MODE_TIER = {"read-only": "read", "edit": "edit", "execute": "execute"}
# The hub's default `user` role plus the MCP scopes on the user's own servers (`!user` is expanded
# by the hub to each owner), so a user (or a service minting for them) may ask for a token with
# `custom:mcp:<tier>!server=<self>/<server>` and never for another user's server.
USER_ROLE: dict[str, Any] = {
    "name": "user",
    "description": "Standard user privileges, plus MCP on the user's own servers",
    "scopes": ["self", "custom:mcp:execute!user"],
}


def z2jh_hub_values() -> dict[str, Any]:
    """The same in Zero to JupyterHub values (what the README shows): `hub.config` passes the trait
    through, `hub.loadRoles.user` replaces the default user role (its key becomes the name)."""
    role = {k: v for k, v in USER_ROLE.items() if k != "name"}
    return {"hub": {"config": {"JupyterHub": {"custom_scopes": CUSTOM_SCOPES}}, "loadRoles": {"user": role}}}


def mcp_scope(user: str, server_name: str = "", tier: str = "execute") -> str:
    """The MCP scope of one tier on one server: `custom:mcp:edit!server=alice/` (default server)."""
    if tier not in MCP_TIERS:
        raise ValueError(f"unknown MCP tier {tier!r}: expected one of {', '.join(MCP_TIERS)}")
    return f"{MCP_SCOPE_PREFIX}{tier}!server={user}/{server_name}"


def token_scopes(user: str, server_name: str = "", mode: str = "execute") -> list[str]:
    """What this product mints for one server: only the MCP scope the policy's mode needs."""
    return [mcp_scope(user, server_name, MODE_TIER[mode])]


def is_mcp_scope_of(scope: str, user: str, server_name: str = "") -> bool:
    """Whether a scope is an MCP scope (any tier) on this one server."""
    return any(scope == mcp_scope(user, server_name, tier) for tier in MCP_TIERS)


def server_scope(user: str, server_name: str = "") -> str:
    """The narrowest scope reaching one whole Jupyter server: `access:servers!server=alice/` (the
    hub accepts the empty server name; checked against a real hub in the tests). Never minted by
    this product: it opens the Jupyter server's own API, not only MCP."""
    return f"access:servers!server={user}/{server_name}"


def client_config_name(server_name: str) -> str:
    return f"jupyterhub-{server_name}" if server_name else "jupyterhub"


def mcp_remote_config(url: str, token: str, server_name: str) -> dict[str, Any]:
    """For stdio-only clients (Claude Desktop and the like): `npx mcp-remote <url> --header ...`.
    The header value comes from env because some hosts split arguments on spaces. mcp-remote
    refuses a plain-http URL off localhost unless told (`--allow-http`): a hub without TLS
    (Z2JH without `proxy.https`) hands out exactly that."""
    args = ["-y", "mcp-remote", url, "--header", "Authorization:${AUTH_HEADER}"]
    if url.startswith("http://"):
        args.append("--allow-http")
    return {
        "mcpServers": {
            client_config_name(server_name): {
                "command": "npx",
                "args": args,
                "env": {"AUTH_HEADER": f"Bearer {token}"},
            }
        }
    }


def mcp_http_config(url: str, token: str, server_name: str) -> dict[str, Any]:
    """For clients that speak Streamable HTTP themselves: url + headers."""
    return {
        "mcpServers": {
            client_config_name(server_name): {
                "type": "http",
                "url": url,
                "headers": {"Authorization": f"Bearer {token}"},
            }
        }
    }
