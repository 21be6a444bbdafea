"""Pure core of local mode: options, the hub's configuration, what each user is handed.

No I/O here; ``demo.py`` runs the plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_operator import endpoint

from .sidecar_env import demo_policy

SERVICE_NAME = "jupyterhub-mcp-demo"
# The MCP authorization server (mcp_authserver), a hub-managed service: clients connect by URL alone.
AUTH_SERVICE_NAME = "mcp-auth"
AUTH_STATE_FILE = "mcp-auth-state.json"
AUTH_SECRET_FILE = "mcp-auth-secret"
TOKEN_NOTE = "jupyterhub-mcp demo endpoint token"
# A user name becomes a folder under the state dir: keep it to names that are safe there.
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


class OptionsError(ValueError):
    """Command-line options that cannot work; the message says which and why."""


def parse_users(raw: str) -> list[str]:
    users = [u.strip() for u in raw.split(",") if u.strip()]
    if not users:
        raise OptionsError("--users needs at least one user name")
    for user in users:
        if not _USER_NAME.match(user) or user != user.lower():
            raise OptionsError(
                f"--users: {user!r} is not a usable demo user name "
                "(lower-case letters, digits and . _ @ + -, starting with a letter or digit)"
            )
    if len(set(users)) != len(users):
        raise OptionsError(f"--users lists a name twice: {raw!r}")
    return users


def parse_port_range(raw: str | None) -> list[int]:
    """``9000-9099`` or ``9000`` -> ports; empty -> [] (any free port)."""
    if not raw:
        return []
    low, _, high = raw.partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        raise OptionsError(f"--sidecar-ports must look like 9000-9099, got {raw!r}") from None
    if not 1 <= first <= last <= 65535:
        raise OptionsError(f"--sidecar-ports: {raw!r} is not a range of ports")
    return list(range(first, last + 1))


@dataclass(frozen=True)
class DemoOptions:
    users: list[str]
    state_dir: Path
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_port: int = 8081
    proxy_api_port: int = 8001
    sidecar_ports: list[int] = field(default_factory=list)
    token_ttl: int = 86400
    policy: dict[str, Any] = field(default_factory=demo_policy)
    route_check_interval: int = 300
    start_timeout: int = 120
    oauth_access_ttl: int = 3600  # lifetime of the tokens the authorization server mints
    auth_port: int = 0  # the authorization server's port; 0: any free one

    def ports(self) -> list[tuple[str, int, str, str]]:
        """(host, port, role, flag) for every port the demo listens on."""
        return [
            (self.ip, self.port, "public proxy port", "--port"),
            ("127.0.0.1", self.hub_port, "hub API port", "--hub-port"),
            ("127.0.0.1", self.proxy_api_port, "proxy REST API port", "--proxy-api-port"),
        ]

    def check(self) -> None:
        numbers = [p for _, p, _, _ in self.ports()]
        if len(set(numbers)) != len(numbers):
            raise OptionsError(f"--port, --hub-port and --proxy-api-port must differ, got {numbers}")
        clash = set(numbers) & set(self.sidecar_ports)
        if clash:
            raise OptionsError(f"--sidecar-ports overlaps the hub/proxy ports {sorted(clash)}")
        if self.token_ttl < 60:
            raise OptionsError("--token-ttl must be at least 60 seconds")
        if self.oauth_access_ttl < 60:
            raise OptionsError("--oauth-token-ttl must be at least 60 seconds")
        if self.auth_port and self.auth_port in numbers + list(self.sidecar_ports):
            raise OptionsError(f"--auth-port {self.auth_port} clashes with another port of the demo")

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.ip in ("", "0.0.0.0") else self.ip
        return f"http://{host}:{self.port}"

    @property
    def hub_api_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    @property
    def proxy_api_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_api_port}"

    def user_dir(self, user: str) -> Path:
        return self.state_dir / user


# The hub's default for the server's token (the `server` role), plus read:tokens on its own user.
SERVER_TOKEN_SCOPES = ["users:activity!user", "access:servers!server", "read:tokens!user"]


def service_scopes(users: list[str]) -> list[str]:
    """The demo service may start/stop these users' servers and mint their tokens; nothing else."""
    scopes: list[str] = []
    for user in users:
        scopes += [f"servers!user={user}", f"tokens!user={user}"]
    return scopes


def auth_service_scopes(users: list[str]) -> list[str]:
    """The authorization server mints these users' MCP tokens (the narrowest scope that may): the
    hub still refuses any scope the user does not hold, so it can mint nothing but their MCP scopes."""
    return [f"tokens!user={user}" for user in users]


def issuer_url(options: DemoOptions) -> str:
    return f"{options.public_url}/services/{AUTH_SERVICE_NAME}"


def auth_service(options: DemoOptions, *, port: int, command: list[str]) -> dict[str, Any]:
    """The hub service entry that runs the authorization server (the hub gives it its OAuth client,
    API token and URL; our own login page is the consent page, so the hub asks no confirmation)."""
    state = options.state_dir
    return {
        "name": AUTH_SERVICE_NAME,
        "url": f"http://127.0.0.1:{port}",
        "command": command,
        "oauth_no_confirm": True,
        "environment": {
            "MCP_AUTH_PUBLIC_URL": options.public_url,
            "MCP_AUTH_STATE_FILE": str(state / AUTH_STATE_FILE),
            "MCP_AUTH_SECRET_FILE": str(state / AUTH_SECRET_FILE),
            "MCP_AUTH_ACCESS_TTL": str(options.oauth_access_ttl),
            "PYTHONUNBUFFERED": "1",
        },
    }


def hub_config(
    options: DemoOptions,
    *,
    service_token: str,
    password: str,
    chp_command: list[str],
    singleuser_cmd: list[str],
    as_root: bool = False,
    auth_port: int = 0,
    auth_cmd: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Traitlets config for the hub, ``{Class: {trait: value}}`` (loaded by hub_config.py).
    With ``auth_port``, the MCP authorization server runs as a hub service too."""
    state = options.state_dir
    services: list[dict[str, Any]] = [{"name": SERVICE_NAME, "api_token": service_token}]
    roles: list[dict[str, Any]] = [
        endpoint.USER_ROLE,
        {
            "name": SERVICE_NAME,
            "description": "jupyterhub-mcp local mode: start demo servers, mint their MCP tokens",
            "scopes": service_scopes(options.users),
            "services": [SERVICE_NAME],
        },
    ]
    extra_routes: dict[str, str] = {}
    oauth: dict[str, Any] = {}
    if auth_port:
        service = auth_service(options, port=auth_port, command=auth_cmd or ["jupyterhub-mcp-authserver"])
        services.append(service)
        roles.append(
            {
                "name": AUTH_SERVICE_NAME,
                "description": "jupyterhub-mcp authorization server: mint users' MCP tokens at their consent",
                "scopes": auth_service_scopes(options.users),
                "services": [AUTH_SERVICE_NAME],
            }
        )
        # Users log in to the authorization server through the hub's OAuth: that needs access to it.
        roles.append(
            {
                "name": f"{AUTH_SERVICE_NAME}-users",
                "description": "log in to the MCP authorization server (its consent page)",
                "scopes": [f"access:services!service={AUTH_SERVICE_NAME}"],
                "users": list(options.users),
            }
        )
        # Clients look for these at the hub's origin (RFC 9728 §3.1, RFC 8414 §3.1).
        extra_routes = {
            "/.well-known/oauth-protected-resource/": service["url"],
            "/.well-known/oauth-authorization-server/": service["url"],
        }
        oauth = {"authorization_server": issuer_url(options), "hub_public_url": options.public_url}
    return {
        "JupyterHub": {
            "ip": options.ip,
            "port": options.port,
            "hub_ip": "127.0.0.1",
            "hub_port": options.hub_port,
            "db_url": f"sqlite:///{state / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(state / "jupyterhub_cookie_secret"),
            "pid_file": str(state / "jupyterhub.pid"),
            "spawner_class": "mcp_local.spawner.MCPLocalSpawner",
            "authenticator_class": "dummy",
            "cleanup_servers": True,
            "allow_named_servers": True,  # /user/<name>/<server>/mcp works the same way
            "cleanup_proxy": True,
            "last_activity_interval": options.route_check_interval,
            "services": services,
            # The MCP custom scopes and the user role granting them on each user's own servers: what
            # the README tells a Z2JH admin to configure, so demo tokens open MCP and nothing else.
            "custom_scopes": endpoint.CUSTOM_SCOPES,
            "load_roles": roles,
        },
        "Authenticator": {"allowed_users": list(options.users)},
        "DummyAuthenticator": {"password": password},
        "ConfigurableHTTPProxy": {
            "api_url": options.proxy_api_url,
            "command": chp_command,
            "pid_file": str(state / "proxy.pid"),
            "extra_routes": extra_routes,
        },
        "Spawner": {
            "cmd": singleuser_cmd,
            # Local mode runs servers as the current OS user; Jupyter refuses root unless told.
            "args": ["--allow-root"] if as_root else [],
            "default_url": "/lab",
            "start_timeout": options.start_timeout,
            "http_timeout": options.start_timeout,
            # SIGINT only makes a Jupyter server ask "Shutdown (y/[n])?" and carry on; SIGTERM
            # stops it, usually in 1-4 s. A server with many rooms can hang in its shutdown: after
            # 8 s it is killed (its kernels notice their parent is gone and exit on their own).
            "interrupt_timeout": 0,
            "term_timeout": 8,
            # The server's token (the sidecar's own) may also read the user's token models, so the
            # sidecar caches an admitted answer no longer than the token lives (its expires_at).
            "server_token_scopes": SERVER_TOKEN_SCOPES,
        },
        "MCPLocalSpawner": {
            "home_dir_template": str(state / "{username}" / "home"),
            "proxy_api_url": options.proxy_api_url,
            "sidecar_ports": options.sidecar_ports,
            "public_hosts": public_hosts(options),
            "mcp_policy": options.policy,
            "sidecar_log_template": str(state / "{username}" / "sidecar{servername}.log"),
            **oauth,
        },
    }


@dataclass(frozen=True)
class Endpoint:
    """What one user is handed: where their MCP endpoint is and a token for it."""

    user: str
    url: str
    token: str = field(repr=False)
    server_name: str = ""

    def mcp_json(self) -> dict[str, Any]:
        """``.demo/<user>/mcp.json``: url, token and a paste-ready Streamable HTTP client config;
        ``mcpRemote`` is the same endpoint for stdio-only clients through mcp-remote."""
        return {
            "url": self.url,
            "token": self.token,
            **endpoint.mcp_http_config(self.url, self.token, self.server_name),
            "mcpRemote": endpoint.mcp_remote_config(self.url, self.token, self.server_name),
        }


def public_hosts(options: DemoOptions) -> list[str]:
    """The ``host:port`` names clients reach the demo's proxy at, which the proxy passes on as the
    Host header: the sidecars accept these (and their own address) and refuse any other, the
    SDK's DNS-rebinding check. A proxy on every interface is reached by names this plan cannot
    know (the machine's, its addresses): ``*``, the check off, as behind an Ingress."""
    if options.ip in ("", "0.0.0.0", "::"):
        return ["*"]
    names = [] if options.ip in ("127.0.0.1", "localhost") else [options.ip]
    names = [f"[{n}]" if ":" in n else n for n in names]
    return [f"{name}:{options.port}" for name in [*names, "127.0.0.1", "localhost"]]


def endpoint_url(options: DemoOptions, user: str, server_name: str = "") -> str:
    """The user's endpoint on the demo's public proxy, as the operator builds it on the hub's."""
    return endpoint.endpoint_url(user, server_name, route_host=None, hub_public_url=options.public_url)


def token_scopes(user: str, server_name: str = "", policy: dict[str, Any] | None = None) -> list[str]:
    """Only the MCP scope of the policy's tool mode on that server: it does not open Jupyter itself."""
    mode = ((policy or {}).get("spec") or {}).get("tools", {}).get("mode") or "execute"
    return endpoint.token_scopes(user, server_name, mode)
