"""Local mode's pure core: the sidecar environment, options, the hub config, what users are handed.

Plain unit tests (no processes), kept beside the e2e tests of the same feature.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from mcp_local.plan import (
    DemoOptions,
    Endpoint,
    OptionsError,
    endpoint_url,
    hub_config,
    parse_port_range,
    parse_users,
    token_scopes,
)
from mcp_local.processes import PortInUse, check_port_free
from mcp_local.routes import route_path
from mcp_local.sidecar_env import demo_policy, local_sidecar_environment
from mcp_operator import endpoint as endpoint_module
from mcp_operator.injection import sidecar_environment
from mcp_operator.policy import Policy
from mcp_sidecar.config import Settings

# What Spawner.get_env() hands a local user server (abridged, real names).
SERVER_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "JUPYTERHUB_API_TOKEN": "server-token",
    "JPY_API_TOKEN": "server-token",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/alice/oauth_callback",
    "JUPYTERHUB_OAUTH_SCOPES": '["access:servers!server=alice/"]',
    "JUPYTERHUB_USER": "alice",
    "JUPYTERHUB_SERVER_NAME": "",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
    "JUPYTERHUB_ACTIVITY_URL": "http://127.0.0.1:8081/hub/api/users/alice/activity",
    "JUPYTERHUB_BASE_URL": "/",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
    "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:41234/user/alice/",
}


def test_sidecar_env_is_the_webhooks_plus_local_ports() -> None:
    policy = Policy.from_object(
        {"metadata": {"name": "p"}, "spec": {"tools": {"mode": "read-only", "deny": ["execute_code"]}}}
    )
    env = local_sidecar_environment(SERVER_ENV, policy, jupyter_url="http://127.0.0.1:41234", port=45678)
    webhook = {
        e["name"]: e["value"]
        for e in sidecar_environment(
            policy,
            jupyter_url="http://127.0.0.1:41234",
            hub_env=[{"name": k, "value": v} for k, v in SERVER_ENV.items()],
        )
    }
    for name, value in webhook.items():
        if name != "MCP_PORT":
            assert env[name] == value, name
    assert env["MCP_PORT"] == "45678" and env["MCP_HOST"] == "127.0.0.1"
    # The server's own OAuth client and URL are not the sidecar's (same as in a pod).
    assert not {"JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_OAUTH_SCOPES", "JUPYTERHUB_SERVICE_URL"} & set(env)
    assert env["PATH"] == "/usr/bin:/bin"

    settings = Settings.from_env(env)
    assert settings.user == "alice" and settings.mcp_path == "/user/alice/mcp"
    assert settings.jupyter_base_url == "http://127.0.0.1:41234/user/alice/"
    assert settings.uses_hub_auth and settings.port == 45678
    assert settings.mode == "read-only" and settings.deny_tools == {"execute_code"}


def test_sidecar_env_without_a_server_token_is_refused() -> None:
    env = {k: v for k, v in SERVER_ENV.items() if k != "JUPYTERHUB_API_TOKEN"}
    with pytest.raises(ValueError, match="lacks JUPYTERHUB_API_TOKEN"):
        local_sidecar_environment(
            env, Policy.from_object(demo_policy()), jupyter_url="http://127.0.0.1:1", port=2
        )


def test_user_names_and_port_ranges() -> None:
    assert parse_users(" alice, bob ") == ["alice", "bob"]
    assert parse_users("a.b@x.org") == ["a.b@x.org"]
    for bad in ("", "alice,alice", "../etc", "Alice", "a/b"):
        with pytest.raises(OptionsError, match="--users"):
            parse_users(bad)
    assert parse_port_range("9000-9002") == [9000, 9001, 9002]
    assert parse_port_range(None) == []
    for bad in ("x", "9002-9000", "0-5"):
        with pytest.raises(OptionsError, match="--sidecar-ports"):
            parse_port_range(bad)


def test_options_refuse_clashing_ports(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="must differ"):
        DemoOptions(users=["a"], state_dir=tmp_path, port=9000, hub_port=9000).check()
    with pytest.raises(OptionsError, match="overlaps"):
        DemoOptions(users=["a"], state_dir=tmp_path, sidecar_ports=[8000, 8001]).check()


def test_hub_config_grants_the_service_only_the_demo_users(tmp_path: Path) -> None:
    options = DemoOptions(users=["alice", "bob"], state_dir=tmp_path, port=9000)
    config = hub_config(options, service_token="s", password="p", chp_command=["chp"], singleuser_cmd=["su"])
    user_role, role = config["JupyterHub"]["load_roles"]
    # the MCP scopes exist and every user holds them on their own servers (what the README says)
    assert user_role == endpoint_module.USER_ROLE and "custom:mcp:execute!user" in user_role["scopes"]
    assert config["JupyterHub"]["custom_scopes"] == endpoint_module.CUSTOM_SCOPES
    assert sorted(role["scopes"]) == sorted(
        ["servers!user=alice", "tokens!user=alice", "servers!user=bob", "tokens!user=bob"]
    )
    assert config["JupyterHub"]["spawner_class"] == "mcp_local.spawner.MCPLocalSpawner"
    assert config["MCPLocalSpawner"]["mcp_policy"] == demo_policy()
    assert config["ConfigurableHTTPProxy"]["api_url"] == "http://127.0.0.1:8001"
    assert str(tmp_path) in config["JupyterHub"]["db_url"]
    assert config["Spawner"]["args"] == []
    as_root = hub_config(
        options, service_token="s", password="p", chp_command=[], singleuser_cmd=[], as_root=True
    )
    assert as_root["Spawner"]["args"] == ["--allow-root"]


def test_what_a_user_is_handed(tmp_path: Path) -> None:
    options = DemoOptions(users=["a.b@x.org"], state_dir=tmp_path, port=9000)
    url = endpoint_url(options, "a.b@x.org")
    assert url == "http://127.0.0.1:9000/user/a.b@x.org/mcp"
    # only the MCP scope of the policy's mode: it does not open the Jupyter server itself
    assert token_scopes("alice") == ["custom:mcp:execute!server=alice/"]
    assert token_scopes("alice", "lab", demo_policy("read-only")) == ["custom:mcp:read!server=alice/lab"]
    endpoint = Endpoint(user="alice", url=url, token="t0k")
    assert "t0k" not in repr(endpoint)
    handed = endpoint.mcp_json()
    assert handed["url"] == url and handed["token"] == "t0k"
    assert handed["mcpServers"]["jupyterhub"]["headers"] == {"Authorization": "Bearer t0k"}
    assert url in handed["mcpRemote"]["mcpServers"]["jupyterhub"]["args"]


def test_route_path_is_what_the_sidecar_serves() -> None:
    assert route_path("/user/alice/") == "/user/alice/mcp"
    assert route_path("/user/alice/lab/") == "/user/alice/lab/mcp"
    assert route_path("/user/a.b%40x.org/") == Settings(service_prefix="/user/a.b%40x.org/").mcp_path


def test_taken_port_message_names_port_role_and_flag() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(PortInUse) as taken:
            check_port_free("127.0.0.1", port, "hub API port", "--hub-port")
    assert str(taken.value) == (
        f"port {port} on 127.0.0.1 is already in use (hub API port); stop whatever listens there "
        "or choose another port with --hub-port"
    )
