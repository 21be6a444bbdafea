"""baseUrl everywhere, against a real JupyterHub and the real control plane: the token is minted at
the hub API the pod was handed (`JUPYTERHUB_API_URL`; the operator is given none), the Secret's
URL has the pod's own prefix (`JUPYTERHUB_SERVICE_PREFIX`, hub.baseUrl in it) without doubling the
public URL's path, and a hub API URL without the hub's base gets a redirect from the real hub that
the operator explains instead of passing on a bare "302".
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from kubernetes import client
from mcp_operator.constants import ANN_HUB_API, ANN_INJECTED
from mcp_operator.hubclient import HubClient, HubRefused

from tests.harness.hub import RunningHub
from tests.harness.operator import OperatorProcess, create_policy, eventually, install_crd

pytestmark = [pytest.mark.hub, pytest.mark.controlplane]


def kubespawner_pod(user: str, env: dict[str, str]) -> dict[str, Any]:
    """Injected-looking (the webhook is off here), with the env KubeSpawner gives the server."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"jupyter-{user}",
            "labels": {"component": "singleuser-server", "hub.jupyter.org/username": user},
            "annotations": {"hub.jupyter.org/username": user, ANN_INJECTED: "base/1"},
        },
        "spec": {
            "containers": [
                {
                    "name": "notebook",
                    "image": "quay.io/jupyter/base-notebook:latest",
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                }
            ]
        },
    }


async def test_a_hub_api_url_without_the_hubs_base_is_explained(jupyterhub: RunningHub) -> None:
    """Z2JH with hub.baseUrl /jhub/ and hub.apiUrl left at http://hub:8081/hub/api: the API URL
    lacks the hub's prefix and the real hub redirects. Same here: /api lacks this hub's /hub/."""
    wrong = jupyterhub.api_url.replace("/hub/api", "/api")
    async with HubClient(wrong, jupyterhub.service_token, attempts=1) as hub:
        with pytest.raises(HubRefused) as refused:
            await hub.list_tokens("alice")
    assert 300 <= refused.value.status < 400
    message = str(refused.value)
    assert "hub.baseUrl" in message and "hub.apiUrl" in message and "JUPYTERHUB_API_URL" in message
    assert jupyterhub.service_token not in message


def test_tokens_are_minted_at_the_pods_hub_api_and_the_url_has_its_prefix(
    controlplane: Any, kube_api: Any, k8s_namespace: str, jupyterhub: RunningHub, tmp_path: Any
) -> None:
    install_crd(controlplane)
    namespace, core = k8s_namespace, client.CoreV1Api(kube_api)
    create_policy(kube_api, namespace, "base", {"selection": {"users": ["*"]}, "tokens": {"issue": True}})
    op = OperatorProcess(controlplane, namespace, tmp_path, native_sidecar="true")
    op.args += ["--no-webhook"]
    # no JUPYTERHUB_API_URL for the operator: each pod's own is used
    op.env.update(
        JUPYTERHUB_API_TOKEN=jupyterhub.service_token,
        JUPYTERHUB_PUBLIC_URL=jupyterhub.public_url,
        MCP_TOKEN_RETRY_DELAY="1",
    )
    good = kubespawner_pod(
        "alice",
        {"JUPYTERHUB_API_URL": jupyterhub.api_url, "JUPYTERHUB_SERVICE_PREFIX": "/jhub/user/alice/"},
    )
    wrong_api = jupyterhub.api_url.replace("/hub/api", "/api")
    bad = kubespawner_pod(
        "bob", {"JUPYTERHUB_API_URL": wrong_api, "JUPYTERHUB_SERVICE_PREFIX": "/jhub/user/bob/"}
    )
    op.start()
    try:
        core.create_namespaced_pod(namespace, good)
        core.create_namespaced_pod(namespace, bad)

        def secret() -> Any:
            try:
                return core.read_namespaced_secret("mcp-token-alice", namespace)
            except client.ApiException as e:
                if e.status == 404:
                    return None
                raise

        got = eventually("alice's token Secret", secret)
        data = {k: base64.b64decode(v).decode() for k, v in got.data.items()}
        # the path is the pod's own, with the hub's base in it (not /user/alice/mcp)
        assert data["url"] == f"{jupyterhub.public_url}/jhub/user/alice/mcp"
        assert got.metadata.annotations[ANN_HUB_API].rstrip("/") == jupyterhub.api_url
        who = httpx.get(
            f"{jupyterhub.api_url}/user", headers={"Authorization": f"token {data['token']}"}, timeout=10
        )
        assert who.status_code == 200 and who.json()["name"] == "alice"

        def warning() -> list[Any]:
            events = core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=jupyter-bob"
            ).items
            return [e for e in events if e.type == "Warning" and e.reason == "HubRefused"]

        (event, *_) = eventually("a HubRefused Warning on bob's pod", warning)
        assert "hub.baseUrl" in event.message and wrong_api in event.message
        assert "each pod's JUPYTERHUB_API_URL" in op.text()
    finally:
        op.stop()
        print(f"\n--- operator log tail ---\n{op.text()[-3000:]}")
