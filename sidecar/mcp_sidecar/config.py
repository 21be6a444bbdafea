"""Sidecar settings, parsed from the environment in exactly one place."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("read-only", "edit", "execute")
# Open MCP sessions at most. An idle session costs ~38 KiB: 5 000 opened against this cap left a
# fresh sidecar at 117 MiB RSS (75 MiB at start; 2 000 uncapped ones took it to 149 MiB).
DEFAULT_MAX_SESSIONS = 1000


class ConfigError(ValueError):
    """The environment does not describe a sidecar that can start safely."""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _names(value: str | None) -> frozenset[str]:
    return frozenset(n.strip() for n in (value or "").split(",") if n.strip())


def _number(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from exc


def _count(env: Mapping[str, str], key: str, default: int) -> int:
    value = _number(env, key, default)
    if not (math.isfinite(value) and value == int(value)):
        raise ConfigError(f"{key} must be a whole number, got {env.get(key)!r}")
    return int(value)


def _prefix(raw: str | None) -> str:
    prefix = raw or "/"
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    if not prefix.endswith("/"):
        prefix += "/"
    return prefix


@dataclass(frozen=True)
class Settings:
    service_prefix: str = "/"
    user: str | None = None
    server_name: str = ""
    hub_api_url: str | None = None
    hub_api_token: str | None = field(default=None, repr=False)
    activity_url: str | None = None
    allow_token_in_url: bool = False
    jupyter_url: str = "http://127.0.0.1:8888"
    jupyter_token: str | None = field(default=None, repr=False)
    host: str = "0.0.0.0"
    port: int = 8890
    static_token: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ("*",)
    mode: str = "execute"
    allow_tools: frozenset[str] = frozenset()
    deny_tools: frozenset[str] = frozenset()
    exec_timeout: float = 30.0
    exec_max_timeout: float = 600.0
    output_max_chars: int = 20_000
    output_max_image_bytes: int = 1_048_576
    audit_log: str = "stdout"
    audit_include_code: bool = False
    auth_cache_ttl: float = 30.0
    # Hub look-ups for tokens the sidecar has not seen (cached or admitted before): at most this
    # many a second after a burst; past it the caller gets 503 + Retry-After, never a false 401.
    hub_lookups_per_second: float = 10.0
    hub_lookup_burst: int = 20
    # Admit hub tokens holding access:servers for this server (besides the custom:mcp scopes).
    accept_server_access: bool = True
    activity_interval: float = 60.0
    # Connections: the request head must arrive within header_timeout seconds; an idle
    # keep-alive connection is closed after keep_alive_timeout (uvicorn's own default: 5).
    header_timeout: float = 10.0
    keep_alive_timeout: int = 5
    # MCP sessions: an idle one (no request in flight, no open GET stream) ends after this long;
    # at most this many at once, the oldest idle one closed to make room (sessions.SessionManager).
    session_idle_timeout: float = 1800.0
    max_sessions: int = DEFAULT_MAX_SESSIONS
    # MCP authorization (RFC 9728): this endpoint's public URL and the authorization servers that
    # issue tokens for it. Both set: a 401 points clients at the protected resource metadata.
    resource_url: str | None = None
    authorization_servers: tuple[str, ...] = ()

    @property
    def mcp_path(self) -> str:
        """Where MCP is served, e.g. ``/user/alice/mcp``: an Ingress routes it with no rewrite."""
        return self.service_prefix + "mcp"

    @property
    def jupyter_base_url(self) -> str:
        """The Jupyter server including the prefix, e.g. ``http://127.0.0.1:8888/user/alice/``."""
        return self.jupyter_url.rstrip("/") + self.service_prefix

    @property
    def uses_hub_auth(self) -> bool:
        return bool(self.hub_api_url) and not self.static_token

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        static_token = env.get("MCP_TOKEN") or None
        token_file = env.get("MCP_TOKEN_FILE")
        if not static_token and token_file:
            try:
                static_token = Path(token_file).read_text().strip() or None
            except OSError as exc:
                raise ConfigError(f"cannot read MCP_TOKEN_FILE {token_file}: {exc.strerror}") from exc
        mode = (env.get("MCP_MODE") or "execute").strip().lower()
        if mode not in MODES:
            raise ConfigError(f"MCP_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        hosts = tuple(h.strip() for h in (env.get("MCP_ALLOWED_HOSTS") or "*").split(",") if h.strip())
        values: dict[str, object] = dict(
            service_prefix=_prefix(env.get("JUPYTERHUB_SERVICE_PREFIX")),
            user=env.get("JUPYTERHUB_USER") or None,
            server_name=env.get("JUPYTERHUB_SERVER_NAME") or "",
            hub_api_url=(env.get("JUPYTERHUB_API_URL") or "").rstrip("/") or None,
            hub_api_token=env.get("JUPYTERHUB_API_TOKEN") or None,
            activity_url=env.get("JUPYTERHUB_ACTIVITY_URL") or None,
            allow_token_in_url=_flag(env.get("JUPYTERHUB_ALLOW_TOKEN_IN_URL")),
            jupyter_url=env.get("JUPYTER_SERVER_URL") or "http://127.0.0.1:8888",
            jupyter_token=env.get("JUPYTER_TOKEN") or env.get("JUPYTERHUB_API_TOKEN") or None,
            host=env.get("MCP_HOST") or "0.0.0.0",
            port=int(_number(env, "MCP_PORT", 8890)),
            static_token=static_token,
            allowed_hosts=hosts or ("*",),
            mode=mode,
            allow_tools=_names(env.get("MCP_ALLOW_TOOLS")),
            deny_tools=_names(env.get("MCP_DENY_TOOLS")),
            exec_timeout=_number(env, "MCP_EXEC_TIMEOUT", 30.0),
            exec_max_timeout=_number(env, "MCP_EXEC_MAX_TIMEOUT", 600.0),
            output_max_chars=int(_number(env, "MCP_OUTPUT_MAX_CHARS", 20_000)),
            output_max_image_bytes=int(_number(env, "MCP_OUTPUT_MAX_IMAGE_BYTES", 1_048_576)),
            audit_log=env.get("MCP_AUDIT_LOG") or "stdout",
            audit_include_code=_flag(env.get("MCP_AUDIT_INCLUDE_CODE")),
            auth_cache_ttl=_number(env, "MCP_AUTH_CACHE_TTL", 30.0),
            hub_lookups_per_second=_number(env, "MCP_HUB_LOOKUPS_PER_SECOND", 10.0),
            hub_lookup_burst=_count(env, "MCP_HUB_LOOKUP_BURST", 20),
            accept_server_access=_flag(env.get("MCP_ACCEPT_SERVER_ACCESS") or "true"),
            activity_interval=_number(env, "MCP_ACTIVITY_INTERVAL", 60.0),
            header_timeout=_number(env, "MCP_HEADER_TIMEOUT", 10.0),
            keep_alive_timeout=_count(env, "MCP_KEEPALIVE_TIMEOUT", 5),
            session_idle_timeout=_number(env, "MCP_SESSION_IDLE_TIMEOUT", 1800.0),
            max_sessions=_count(env, "MCP_MAX_SESSIONS", DEFAULT_MAX_SESSIONS),
            resource_url=(env.get("MCP_RESOURCE_URL") or "").strip() or None,
            authorization_servers=tuple(sorted(_names(env.get("MCP_AUTHORIZATION_SERVERS")))),
        )
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.static_token and not self.hub_api_url:
            raise ConfigError(
                "refusing to start without authentication: set JUPYTERHUB_API_URL (hub tokens) "
                "or MCP_TOKEN / MCP_TOKEN_FILE (a static token)"
            )
        if self.hub_api_url and not self.static_token and not self.user:
            raise ConfigError("JUPYTERHUB_USER is required with hub authentication")
        if self.exec_timeout <= 0 or self.exec_max_timeout < self.exec_timeout:
            raise ConfigError("need 0 < MCP_EXEC_TIMEOUT <= MCP_EXEC_MAX_TIMEOUT")
        if not (math.isfinite(self.session_idle_timeout) and self.session_idle_timeout > 0):
            raise ConfigError("MCP_SESSION_IDLE_TIMEOUT must be a positive number of seconds")
        if not (math.isfinite(self.header_timeout) and self.header_timeout > 0):
            raise ConfigError("MCP_HEADER_TIMEOUT must be a positive number of seconds")
        if self.keep_alive_timeout < 1:
            raise ConfigError("MCP_KEEPALIVE_TIMEOUT must be at least 1 second")
        if self.max_sessions < 1:
            raise ConfigError("MCP_MAX_SESSIONS must be at least 1")
        if not (math.isfinite(self.hub_lookups_per_second) and self.hub_lookups_per_second > 0):
            raise ConfigError("MCP_HUB_LOOKUPS_PER_SECOND must be a positive number")
        if self.hub_lookup_burst < 1:
            raise ConfigError("MCP_HUB_LOOKUP_BURST must be at least 1")
        if bool(self.resource_url) != bool(self.authorization_servers):
            raise ConfigError(
                "MCP_RESOURCE_URL and MCP_AUTHORIZATION_SERVERS go together: set both or neither"
            )
        for url in (self.resource_url or "", *self.authorization_servers):
            if url and not url.startswith(("https://", "http://")):
                raise ConfigError(
                    f"MCP_RESOURCE_URL / MCP_AUTHORIZATION_SERVERS: {url!r} is not an http(s) URL"
                )
