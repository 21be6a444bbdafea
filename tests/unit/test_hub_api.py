"""Which hub API a server's token is minted at, and what the pod says about its server (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_operator.hubclient import HubNotConfigured, HubPool
from mcp_operator.token_workers import user_server


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.api_url, self.token = url, token

    async def aclose(self) -> None: ...


def kubespawner_pod(env: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "jupyter-alice--lab",
            "namespace": "jhub",
            "uid": "u1",
            "annotations": {
                "hub.jupyter.org/username": "alice",
                "hub.jupyter.org/servername": "lab",
                "mcp.jupyterhub.org/injected": "default/1",
            },
        },
        "spec": {
            "containers": [{"name": "notebook", "env": [{"name": k, "value": v} for k, v in env.items()]}]
        },
    }


def test_the_pods_prefix_and_hub_api_come_from_its_env() -> None:
    """hub.baseUrl /jhub/: the hub hands the pod both with the base in them."""
    server = user_server(
        kubespawner_pod(
            {
                "JUPYTERHUB_SERVICE_PREFIX": "/jhub/user/alice/lab/",
                "JUPYTERHUB_API_URL": "http://hub:8081/jhub/hub/api",
            }
        )
    )
    assert server is not None
    assert (server.mcp_path, server.hub_api_url) == (
        "/jhub/user/alice/lab/mcp",
        "http://hub:8081/jhub/hub/api",
    )
    bare = user_server(kubespawner_pod({}))
    assert bare is not None and (bare.mcp_path, bare.hub_api_url) == ("/user/alice/lab/mcp", "")


def test_the_configured_hub_api_wins_else_the_pods_one_pooled_per_url() -> None:
    pods = HubPool("svc", None, factory=Client)
    a = pods.get("http://hub:8081/jhub/hub/api")
    assert a.api_url == "http://hub:8081/jhub/hub/api" and a.token == "svc"  # type: ignore[attr-defined]
    assert pods.get("http://hub:8081/jhub/hub/api") is a
    assert pods.get("http://other:8081/hub/api") is not a
    with pytest.raises(HubNotConfigured, match="no hub API URL"):
        pods.get(None)
    explicit = HubPool("svc", "http://hub.jhub.svc:8081/jhub/hub/api", factory=Client)
    assert explicit.get("http://hub:8081/hub/api").api_url == "http://hub.jhub.svc:8081/jhub/hub/api"
    assert explicit.get(None) is explicit.get("whatever")
