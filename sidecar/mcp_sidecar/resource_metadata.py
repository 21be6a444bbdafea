"""Protected resource metadata (RFC 9728): how a client given only this endpoint's URL finds where to
log in. Pure: no I/O.

A 401 carries ``WWW-Authenticate: Bearer realm=..., resource_metadata="<url>"`` and the document at
that URL names this endpoint as the ``resource`` and the hub's MCP authorization server. Only
advertised when both are configured (``MCP_RESOURCE_URL``, ``MCP_AUTHORIZATION_SERVERS``): a
client that sees the metadata starts an OAuth flow and ignores a static header, so a sidecar
without an authorization server must stay silent about OAuth.
"""

from __future__ import annotations

from typing import Any

from mcp.shared.auth import ProtectedResourceMetadata

from .config import Settings

# Where the document is served below the endpoint itself (the proxy routes the whole prefix here).
METADATA_SUFFIX = "/.well-known/oauth-protected-resource"
REALM = "jupyterhub-mcp"
# The OAuth scopes a client asks the authorization server for: one per tool tier.
OAUTH_SCOPES = ("mcp:read", "mcp:edit", "mcp:execute")


def advertised(settings: Settings) -> bool:
    return bool(settings.resource_url and settings.authorization_servers and settings.uses_hub_auth)


def metadata_path(settings: Settings) -> str:
    """Where this sidecar serves the document: ``/user/alice/mcp/.well-known/oauth-protected-resource``."""
    return settings.mcp_path + METADATA_SUFFIX


def metadata_url(resource_url: str) -> str:
    """The public URL of the document: the endpoint's URL + the suffix (what the 401 points at)."""
    return resource_url.rstrip("/") + METADATA_SUFFIX


def document(resource_url: str, authorization_servers: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The RFC 9728 document, validated by the MCP SDK's own model."""
    model = ProtectedResourceMetadata.model_validate(
        {
            "resource": resource_url,
            "authorization_servers": list(authorization_servers),
            "scopes_supported": list(OAUTH_SCOPES),
            "bearer_methods_supported": ["header"],
            "resource_name": "Jupyter notebooks (jupyterhub-mcp)",
        }
    )
    return model.model_dump(mode="json", exclude_none=True)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def www_authenticate(settings: Settings, reason: str, message: str) -> bytes:
    """The challenge of a 401. RFC 6750 §3: no error code when no token was sent (``missing``);
    ``invalid_token`` otherwise, with what happened. ``resource_metadata`` when advertised."""
    parts = [f"realm={_quoted(REALM)}"]
    if reason != "missing":
        parts += ['error="invalid_token"', f"error_description={_quoted(message)}"]
    if advertised(settings):
        assert settings.resource_url is not None
        parts.append(f"resource_metadata={_quoted(metadata_url(settings.resource_url))}")
    return ("Bearer " + ", ".join(parts)).encode("latin-1", "replace")
