"""The sidecar's environment in local mode: what the webhook would inject, plus local networking.

In a cluster the webhook builds the sidecar's env from the notebook container's env (the hub's
JUPYTERHUB_* variables) and the policy; the sidecar reaches Jupyter on the pod's loopback. Here the
server's env comes from the spawner, and Jupyter and the sidecar listen on loopback ports of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

# TODO(issue 8): switch to mcp_operator.injection.sidecar_environment (the webhook's own builder)
# as soon as it lands; until then the same table (docs/architecture.md, "Sidecar environment").
HUB_VARIABLES = (
    "JUPYTERHUB_SERVICE_PREFIX",
    "JUPYTERHUB_USER",
    "JUPYTERHUB_SERVER_NAME",
    "JUPYTERHUB_API_URL",
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_ACTIVITY_URL",
)


REQUIRED = ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER")


def local_sidecar_environment(
    server_env: Mapping[str, str],
    *,
    jupyter_url: str,
    port: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The full process environment for one sidecar.

    ``server_env`` is the user server's environment (``Spawner.get_env()``: PATH and friends plus
    the hub's variables, including the server's own API token); ``extra`` carries policy knobs
    (``MCP_MODE``...). Local networking wins over everything: loopback only, the server's own port.
    """
    env = dict(server_env)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    env.update(
        {
            "JUPYTER_SERVER_URL": jupyter_url,
            "MCP_HOST": "127.0.0.1",
            "MCP_PORT": str(port),
        }
    )
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise ValueError(f"user server environment lacks {', '.join(missing)}: cannot start its sidecar")
    return env
