"""The sidecar's environment in local mode: exactly what the webhook would inject, plus local networking.

In a cluster, ``injection.sidecar_environment`` builds the sidecar's env from the policy and the
notebook container's JUPYTERHUB_* variables. Local mode calls the same function with the user
server's env from the spawner; only where things listen differs (loopback ports of their own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mcp_operator.injection import sidecar_environment
from mcp_operator.policy import Policy

DEMO_POLICY_NAME = "local-demo"


def demo_policy(mode: str = "execute") -> dict[str, Any]:
    """The MCPPolicy object local mode runs with unless given one (same schema as in a cluster)."""
    return {"metadata": {"name": DEMO_POLICY_NAME}, "spec": {"tools": {"mode": mode}}}


def allowed_hosts(port: int, public_hosts: Sequence[str]) -> str:
    """Pure: MCP_ALLOWED_HOSTS of one sidecar, the Host headers its MCP endpoint accepts (the SDK's
    DNS-rebinding check): its own loopback address and the proxy's public ``host:port`` ones, as
    the proxy passes the client's Host on. ``"*"`` among the public ones turns the check off."""
    if "*" in public_hosts:
        return "*"
    own = [f"127.0.0.1:{port}", f"localhost:{port}"]
    return ",".join(dict.fromkeys([*own, *public_hosts]))


def local_sidecar_environment(
    server_env: Mapping[str, str],
    policy: Policy,
    *,
    jupyter_url: str,
    port: int,
    public_hosts: Sequence[str] = (),
    oauth: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The full process environment for one sidecar.

    ``server_env`` is the user server's environment (``Spawner.get_env()``): PATH and friends for
    the process, and the hub's variables (including the server's own API token), which go through
    the webhook's builder like a pod's would. The server's other JUPYTERHUB_* variables (its OAuth
    client, its own service URL) are not the sidecar's, as in a pod. ``public_hosts``: the
    ``host:port`` names the proxy is reached at (``allowed_hosts``).
    """
    injected = sidecar_environment(
        policy,
        jupyter_url=jupyter_url,
        hub_env=[{"name": k, "value": v} for k, v in server_env.items()],
    )
    env = {k: v for k, v in server_env.items() if not k.startswith("JUPYTERHUB_")}
    for entry in injected:
        if "value" not in entry:
            raise ValueError(f"sidecar variable {entry['name']} is a reference; local mode needs values")
        env[entry["name"]] = str(entry["value"])
    # Every sidecar of this machine needs its own port; loopback only, the proxy is the way in.
    env.update(MCP_HOST="127.0.0.1", MCP_PORT=str(port))
    env["MCP_ALLOWED_HOSTS"] = allowed_hosts(port, public_hosts)
    # MCP authorization (MCP_RESOURCE_URL, MCP_AUTHORIZATION_SERVERS) when the demo runs its server.
    env.update(oauth or {})
    missing = [n for n in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER") if not env.get(n)]
    if missing:
        raise ValueError(f"user server environment lacks {', '.join(missing)}: cannot start its sidecar")
    return env
