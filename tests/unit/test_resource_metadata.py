"""The sidecar's protected resource metadata (RFC 9728) and its 401 challenge, pure."""

from __future__ import annotations

import httpx
import pytest
from mcp.client.auth.utils import extract_field_from_www_auth
from mcp_sidecar import resource_metadata
from mcp_sidecar.config import ConfigError, Settings

RESOURCE = "http://127.0.0.1:8000/user/alice/mcp"
ISSUER = "http://127.0.0.1:8000/services/mcp-auth"


def settings(**env: str) -> Settings:
    base = {
        "JUPYTERHUB_API_URL": "http://hub/hub/api",
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
    }
    return Settings.from_env({**base, **env})


def challenge_as_client_reads_it(header: bytes) -> httpx.Response:
    return httpx.Response(401, headers={"WWW-Authenticate": header.decode("latin-1")})


def test_the_401_points_at_the_document_the_sdk_client_finds() -> None:
    s = settings(MCP_RESOURCE_URL=RESOURCE, MCP_AUTHORIZATION_SERVERS=ISSUER)
    header = resource_metadata.www_authenticate(s, "missing", "missing token")
    reply = challenge_as_client_reads_it(header)
    # The MCP SDK's own parser: what an OAuth client follows.
    assert (
        extract_field_from_www_auth(reply, "resource_metadata")
        == RESOURCE + "/.well-known/oauth-protected-resource"
    )
    assert extract_field_from_www_auth(reply, "realm") == "jupyterhub-mcp"
    assert extract_field_from_www_auth(reply, "error") is None  # RFC 6750 §3: no token, no error code
    assert resource_metadata.metadata_path(s) == "/user/alice/mcp/.well-known/oauth-protected-resource"


def test_a_bad_token_keeps_the_bearer_error() -> None:
    s = settings(MCP_RESOURCE_URL=RESOURCE, MCP_AUTHORIZATION_SERVERS=ISSUER)
    reply = challenge_as_client_reads_it(resource_metadata.www_authenticate(s, "invalid", "invalid token"))
    assert extract_field_from_www_auth(reply, "error") == "invalid_token"
    assert extract_field_from_www_auth(reply, "error_description") == "invalid token"


def test_nothing_about_oauth_without_an_authorization_server() -> None:
    header = resource_metadata.www_authenticate(settings(), "missing", "missing token")
    assert header == b'Bearer realm="jupyterhub-mcp"'


def test_the_document_names_the_resource_and_the_authorization_server() -> None:
    doc = resource_metadata.document(RESOURCE, (ISSUER,))
    assert doc["resource"] == RESOURCE
    assert doc["authorization_servers"] == [ISSUER]
    assert doc["scopes_supported"] == ["mcp:read", "mcp:edit", "mcp:execute"]
    assert doc["bearer_methods_supported"] == ["header"]


@pytest.mark.parametrize(
    "env",
    [
        {"MCP_RESOURCE_URL": RESOURCE},
        {"MCP_AUTHORIZATION_SERVERS": ISSUER},
        {"MCP_RESOURCE_URL": "ftp://x/mcp", "MCP_AUTHORIZATION_SERVERS": ISSUER},
    ],
)
def test_half_a_configuration_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        settings(**env)
