"""The endpoint contract (mcp_operator.endpoint): path, URL, scope, client configurations.

The literal spellings below are the contract itself. Code (operator, local mode), the harness and
the chart tests build paths, URLs and scopes through the module; other tests may still assert
literal examples of the result.
"""

from __future__ import annotations

import pytest
from mcp_operator import endpoint as e
from mcp_sidecar.config import Settings


@pytest.mark.parametrize(
    ("user", "server", "path"),
    [
        ("alice", "", "/user/alice/mcp"),
        ("alice", "lab", "/user/alice/lab/mcp"),
        ("a.b@x.org", "", "/user/a.b@x.org/mcp"),
        ("a b@x.org", "lab", "/user/a%20b@x.org/lab/mcp"),
        ("josé", "", "/user/jos%C3%A9/mcp"),
    ],
)
def test_mcp_path(user: str, server: str, path: str) -> None:
    assert e.mcp_path(user, server) == path
    assert e.mcp_path_under(e.server_prefix(user, server)) == path


def test_mcp_path_under_a_prefix_with_or_without_slash() -> None:
    assert e.mcp_path_under("/user/alice/") == "/user/alice/mcp"
    assert e.mcp_path_under("/user/alice") == "/user/alice/mcp"
    assert e.MCP_PATH_TEMPLATE == "/user/<name>/mcp"
    assert e.NAMED_MCP_PATH_TEMPLATE == "/user/<name>/<server name>/mcp"


@pytest.mark.parametrize(("user", "server"), [("alice", ""), ("bob", "lab"), ("a.b@x.org", "")])
def test_the_sidecar_serves_the_contract_path(user: str, server: str) -> None:
    """The sidecar spells its path from the prefix the hub hands the server; the two must agree."""
    env = {"JUPYTERHUB_SERVICE_PREFIX": e.server_prefix(user, server), "MCP_TOKEN": "t"}
    assert Settings.from_env(env).mcp_path == e.mcp_path(user, server)


def test_endpoint_url() -> None:
    assert e.endpoint_url("alice", "", route_host="mcp.example.org", hub_public_url="http://hub") == (
        "https://mcp.example.org/user/alice/mcp"
    )
    assert e.endpoint_url("alice", "", route_host="http://mcp.local:8000/", hub_public_url=None) == (
        "http://mcp.local:8000/user/alice/mcp"
    )
    assert e.endpoint_url("a b@x.org", "lab", route_host=None, hub_public_url="http://127.0.0.1:8000/") == (
        "http://127.0.0.1:8000/user/a%20b@x.org/lab/mcp"
    )
    # neither known: the path, which is right on whatever host serves the hub
    assert e.endpoint_url("alice", "", route_host=None, hub_public_url=None) == "/user/alice/mcp"


def test_endpoint_url_with_the_pods_own_path_and_a_public_url_with_a_path() -> None:
    """hub.baseUrl /jhub/: the pod's path is /jhub/user/alice/mcp; a public URL that says /jhub
    (as admins write it) is not doubled, one with a path of another front proxy keeps it."""
    path = "/jhub/user/alice/mcp"
    for public in (
        "https://hub.example.org/jhub",
        "https://hub.example.org/jhub/",
        "https://hub.example.org",
    ):
        assert e.endpoint_url("alice", "", route_host=None, hub_public_url=public, path=path) == (
            "https://hub.example.org/jhub/user/alice/mcp"
        )
    assert e.endpoint_url("alice", "", route_host=None, hub_public_url="https://x.org/front", path=path) == (
        "https://x.org/front/jhub/user/alice/mcp"
    )
    # /jhubx is not /jhub: a path is matched by whole segments
    assert e.endpoint_url("alice", "", route_host=None, hub_public_url="https://x.org/jhubx", path=path) == (
        "https://x.org/jhubx/jhub/user/alice/mcp"
    )
    assert e.endpoint_url("alice", "", route_host="mcp.example.org", hub_public_url=None, path=path) == (
        "https://mcp.example.org/jhub/user/alice/mcp"
    )
    assert e.endpoint_url("alice", "", route_host=None, hub_public_url=None, path=path) == path
    # without the pod's path: the default, and the public URL's path in front as before
    assert e.endpoint_url("alice", "", route_host=None, hub_public_url="https://hub.example.org/jhub") == (
        "https://hub.example.org/jhub/user/alice/mcp"
    )


def test_scope_is_the_single_server() -> None:
    assert e.server_scope("alice") == "access:servers!server=alice/"
    assert e.server_scope("a.b@x.org", "lab") == "access:servers!server=a.b@x.org/lab"


def test_client_configs() -> None:
    url = "https://hub/user/alice/lab/mcp"
    http = e.mcp_http_config(url, "tok", "lab")
    assert http == {
        "mcpServers": {
            "jupyterhub-lab": {"type": "http", "url": url, "headers": {"Authorization": "Bearer tok"}}
        }
    }
    remote = e.mcp_remote_config(url, "tok", "")["mcpServers"]["jupyterhub"]
    assert remote["command"] == "npx"
    assert remote["args"] == ["-y", "mcp-remote", url, "--header", "Authorization:${AUTH_HEADER}"]
    assert remote["env"] == {"AUTH_HEADER": "Bearer tok"}
    # a hub without TLS: mcp-remote refuses http:// off localhost unless told
    plain = e.mcp_remote_config("http://hub.internal/user/alice/mcp", "tok", "")["mcpServers"]["jupyterhub"]
    assert plain["args"][-1] == "--allow-http"


def test_mcp_scopes_and_the_readme_agree() -> None:
    """The README's Z2JH values for the MCP scopes are the ones the harness and local mode use."""
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "custom_scopes" in b)
    assert yaml.safe_load(block) == e.z2jh_hub_values()
    assert e.token_scopes("alice", "", "read-only") == ["custom:mcp:read!server=alice/"]
    assert e.token_scopes("alice", "lab", "execute") == ["custom:mcp:execute!server=alice/lab"]
    assert e.is_mcp_scope_of("custom:mcp:edit!server=alice/", "alice")
    assert not e.is_mcp_scope_of("custom:mcp:edit!server=alice/", "alice", "lab")
    with pytest.raises(ValueError, match="unknown MCP tier"):
        e.mcp_scope("alice", "", "admin")
