"""Authorization server settings, parsed from the environment in exactly one place.

The hub starts the service with its own variables (JUPYTERHUB_API_URL, JUPYTERHUB_API_TOKEN,
JUPYTERHUB_CLIENT_ID, JUPYTERHUB_OAUTH_CALLBACK_URL, JUPYTERHUB_SERVICE_PREFIX,
JUPYTERHUB_SERVICE_URL); the MCP_AUTH_* ones are ours.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

TIERS = ("read", "edit", "execute")


class ConfigError(ValueError):
    """The environment does not describe an authorization server that can start safely."""


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a whole number of seconds, got {raw!r}") from exc


def _secret(env: Mapping[str, str]) -> str:
    value = env.get("MCP_AUTH_SECRET") or ""
    path = env.get("MCP_AUTH_SECRET_FILE")
    if not value and path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read MCP_AUTH_SECRET_FILE {path}: {exc.strerror}") from exc
    if len(value) < 32:
        raise ConfigError("MCP_AUTH_SECRET (or MCP_AUTH_SECRET_FILE) must hold at least 32 characters")
    return value


@dataclass(frozen=True)
class Settings:
    public_url: str  # the hub's public origin, e.g. https://hub.example.org (no path)
    hub_api_url: str
    hub_api_token: str = field(repr=False)
    service_prefix: str  # /services/mcp-auth/ (with the hub's base URL in front when it has one)
    hub_base_url: str = "/"  # the hub's base URL: user servers live under <base>user/<name>/
    secret: str = field(default="", repr=False)  # signs session cookies and consent forms
    state_file: Path = Path("mcp-auth-state.json")
    listen_host: str = "127.0.0.1"
    listen_port: int = 8002
    access_ttl: int = 3600
    refresh_ttl: int = 30 * 86400
    max_tier: str = "execute"
    # Redirect URIs a client may register: https anywhere, http only to a loopback address (native
    # apps, RFC 8252), plus any scheme listed here (e.g. "cursor,vscode").
    extra_redirect_schemes: frozenset[str] = frozenset()

    @property
    def issuer(self) -> str:
        """The issuer identifier: the service's public URL, without a trailing slash."""
        return self.public_url + self.service_prefix.rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        missing = [
            k for k in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "MCP_AUTH_PUBLIC_URL") if not env.get(k)
        ]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)} (the hub sets the JUPYTERHUB_* ones)")
        public = urlparse(env["MCP_AUTH_PUBLIC_URL"])
        if public.scheme not in ("http", "https") or not public.netloc:
            raise ConfigError(f"MCP_AUTH_PUBLIC_URL must be the hub's public origin, got {public.geturl()!r}")
        listen = urlparse(env.get("JUPYTERHUB_SERVICE_URL") or "http://127.0.0.1:8002")
        max_tier = (env.get("MCP_AUTH_MAX_TIER") or "execute").strip()
        if max_tier not in TIERS:
            raise ConfigError(f"MCP_AUTH_MAX_TIER must be one of {', '.join(TIERS)}, got {max_tier!r}")
        prefix = env.get("JUPYTERHUB_SERVICE_PREFIX") or "/services/mcp-auth/"
        settings = cls(
            public_url=f"{public.scheme}://{public.netloc}",
            hub_api_url=env["JUPYTERHUB_API_URL"].rstrip("/"),
            hub_api_token=env["JUPYTERHUB_API_TOKEN"],
            service_prefix=prefix if prefix.endswith("/") else prefix + "/",
            hub_base_url=env.get("JUPYTERHUB_BASE_URL") or "/",
            secret=_secret(env),
            state_file=Path(env.get("MCP_AUTH_STATE_FILE") or "mcp-auth-state.json"),
            listen_host=listen.hostname or "127.0.0.1",
            listen_port=listen.port or 8002,
            access_ttl=_int(env, "MCP_AUTH_ACCESS_TTL", 3600),
            refresh_ttl=_int(env, "MCP_AUTH_REFRESH_TTL", 30 * 86400),
            max_tier=max_tier,
            extra_redirect_schemes=frozenset(
                s.strip().lower()
                for s in (env.get("MCP_AUTH_REDIRECT_SCHEMES") or "").split(",")
                if s.strip()
            ),
        )
        if settings.access_ttl < 60 or settings.refresh_ttl < settings.access_ttl:
            raise ConfigError("need 60 <= MCP_AUTH_ACCESS_TTL <= MCP_AUTH_REFRESH_TTL")
        return settings
