"""What ``jupyterhub-mcp demo`` sets up: endpoints, tokens, mcp.json, routes, hub service."""

from __future__ import annotations

import stat

import httpx
import psutil
import pytest
from mcp_local.sidecar_env import demo_policy
from mcp_operator.injection import policy_environment
from mcp_operator.policy import Policy

from tests.harness.demo import DemoProcess, User
from tests.harness.paths import eventually

pytestmark = pytest.mark.e2e


def test_each_user_gets_endpoint_token_and_client_config(demo: DemoProcess, alice: User, bob: User) -> None:
    out = demo.text()
    for user in (alice, bob):
        assert user.url == f"{demo.public_url}/user/{user.name}/mcp"
        # What was printed is what was saved.
        assert user.url in out and user.token in out
        path = demo.state / user.name / "mcp.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, "a token file must be private"
        entry = user.mcp_json["mcpServers"]["jupyterhub"]
        assert entry["url"] == user.url
        assert entry["headers"] == {"Authorization": f"Bearer {user.token}"}
        remote = user.mcp_json["mcpRemote"]["mcpServers"]["jupyterhub"]
        assert user.url in remote["args"] and remote["env"]["AUTH_HEADER"] == f"Bearer {user.token}"
    assert alice.token != bob.token
    assert "Ctrl-C stops everything" in out


def test_tokens_are_narrow(demo: DemoProcess, alice: User) -> None:
    """The hub itself says what alice's demo token may do: MCP on her default server, nothing else
    (not even the Jupyter server itself: no access:servers)."""
    model = httpx.get(f"{demo.public_url}/hub/api/user", headers=alice.headers, timeout=30).json()
    assert model["name"] == "alice"
    assert "custom:mcp:execute!server=alice/" in model["scopes"]
    assert not any(
        s.startswith(("admin", "servers", "tokens", "users", "access")) for s in model["scopes"]
    ), model["scopes"]
    # Not enough to act on the hub as alice (e.g. mint more tokens).
    refused = httpx.post(
        f"{demo.public_url}/hub/api/users/alice/tokens", headers=alice.headers, json={}, timeout=30
    )
    assert refused.status_code == 403


def test_service_role_is_limited_to_the_demo_users(demo: DemoProcess) -> None:
    hub = f"http://127.0.0.1:{demo.hub_port}/hub/api"
    me = httpx.get(f"{hub}/user", headers=demo.service_headers, timeout=30).json()
    assert me["kind"] == "service"
    assert set(me["scopes"]) >= {
        "servers!user=alice",
        "tokens!user=alice",
        "servers!user=bob",
        "tokens!user=bob",
    }
    assert not any(s in ("servers", "tokens", "admin:users", "admin:servers") for s in me["scopes"]), me[
        "scopes"
    ]
    # Another user's tokens are out of its reach.
    assert httpx.get(f"{hub}/users/nobody/tokens", headers=demo.service_headers, timeout=30).status_code in (
        403,
        404,
    )


def test_mcp_routes_point_at_live_sidecars(demo: DemoProcess) -> None:
    routes = demo.routes()
    for name in ("alice", "bob"):
        route = routes[f"/user/{name}/mcp"]
        assert route["jupyterhub_mcp"] is True and route["user"] == name
        assert "jupyterhub" not in route, "the hub would treat it as its own and delete it"
        ready = httpx.get(f"{route['target']}/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json()["ready"] is True
    assert routes["/user/alice/mcp"]["target"] != routes["/user/bob/mcp"]["target"]


def test_hub_route_check_leaves_mcp_routes_alone(demo: DemoProcess) -> None:
    """The hub deletes proxy routes it thinks are stale; a decoy marked as the hub's shows it ran."""
    decoy = "/user/nobody-here"
    created = httpx.post(
        demo.proxy_api + decoy,
        headers=demo.proxy_headers,
        json={"target": "http://127.0.0.1:9", "jupyterhub": True, "user": "nobody-here"},
        timeout=30,
    )
    assert created.status_code == 201
    before = demo.routes()
    # The route check runs every 3 s (--route-check-interval).
    eventually("the hub's route check", lambda: decoy not in demo.routes(), timeout=60, every=0.5)
    after = demo.routes()
    for name in ("alice", "bob"):
        assert after[f"/user/{name}/mcp"]["target"] == before[f"/user/{name}/mcp"]["target"]


def test_sidecar_runs_with_the_webhooks_environment(demo: DemoProcess) -> None:
    """The sidecar process really got what injection.sidecar_environment builds for the policy."""
    policy = Policy.from_object(demo_policy())
    expected = {e["name"]: e["value"] for e in policy_environment(policy)}
    routes = demo.routes()
    for name in ("alice", "bob"):
        port = int(routes[f"/user/{name}/mcp"]["target"].rsplit(":", 1)[1])
        (sidecar,) = [p for p in demo.tree() if any(c.laddr.port == port for c in _listening(p))]
        env = sidecar.environ()
        assert env["JUPYTERHUB_USER"] == name
        assert env["JUPYTERHUB_SERVICE_PREFIX"] == f"/user/{name}/"
        assert env["JUPYTERHUB_API_URL"] == f"http://127.0.0.1:{demo.hub_port}/hub/api"
        assert env["JUPYTERHUB_API_TOKEN"], "the server's own token"
        assert env["MCP_PORT"] == str(port) and env["MCP_HOST"] == "127.0.0.1"
        for key, value in expected.items():
            if key != "MCP_PORT":
                assert env[key] == value, key
        assert "JUPYTERHUB_OAUTH_SCOPES" not in env and "JUPYTERHUB_CLIENT_ID" not in env


def _listening(proc: psutil.Process) -> list:
    try:
        return [c for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return []
