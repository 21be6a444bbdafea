"""Route mode gateway against the real control plane with the Gateway API's standard-channel CRDs
(pinned, from the Go module; tests/harness/gatewayapi.py): the real operator gives each pod an
HTTPRoute the API server accepts (its CRD validates it), `<prefix>mcp` -> the pod's Service,
attached to the policy's Gateway; the NetworkPolicy lets that Gateway's pods in; the periodic pass
repairs an HTTPRoute deleted by hand; the garbage collector removes it with the pod.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.harness.gatewayapi import install_gateway_api
from tests.harness.operator import (
    GROUP,
    PLURAL,
    VERSION,
    OperatorProcess,
    eventually,
    install_crd,
    policy_object,
    user_pod,
)

pytestmark = pytest.mark.controlplane

GATEWAY = {"name": "public", "namespace": "gateways", "sectionName": "https"}


class Env:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self.net = client.NetworkingV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def httproute(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", name
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise


@pytest.fixture(scope="module")
def env(controlplane: Any, kube_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    install_crd(controlplane)
    install_gateway_api(controlplane)
    namespace = f"gw-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": namespace}})
    eventually("the default service account", lambda: core.list_namespaced_service_account(namespace).items)
    spec = {
        "selection": {"users": ["*"]},
        "route": {"mode": "gateway", "parentRefs": [GATEWAY], "host": "hub.example.org"},
    }
    client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, policy_object("everyone", spec)
    )
    op = OperatorProcess(controlplane, namespace, tmp_path_factory.mktemp("operator"))
    op.env["MCP_RECONCILE_INTERVAL"] = "2"
    with op.serving(kube_api):
        yield Env(kube_api, namespace)


def test_a_pod_gets_an_httproute_to_its_service_on_the_policys_gateway(env: Env) -> None:
    pod = user_pod("a.b@x.org", "lab")
    for entry in pod["spec"]["containers"][0]["env"]:
        if entry["name"] == "JUPYTERHUB_SERVICE_PREFIX":
            entry["value"] = "/jhub/user/a.b@x.org/lab/"  # hub.baseUrl /jhub/
    name = env.core.create_namespaced_pod(env.namespace, pod).metadata.name
    route = eventually(f"the HTTPRoute of {name}", lambda: env.httproute(f"{name}-mcp"))
    stored = env.core.read_namespaced_pod(name, env.namespace)
    (owner,) = route["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("Pod", stored.metadata.uid)
    spec = route["spec"]
    assert spec["parentRefs"][0]["name"] == "public" and spec["parentRefs"][0]["namespace"] == "gateways"
    assert spec["hostnames"] == ["hub.example.org"]
    (rule,) = spec["rules"]
    assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/jhub/user/a.b@x.org/lab/mcp"}
    (backend,) = rule["backendRefs"]
    assert (backend["name"], backend["port"]) == (f"{name}-mcp", 8890)
    assert rule["timeouts"]["request"] == "660s"  # outlasts a 600 s execution
    env.core.read_namespaced_service(f"{name}-mcp", env.namespace)  # what the backendRef names
    with pytest.raises(ApiException) as missing:
        env.net.read_namespaced_ingress(f"{name}-mcp", env.namespace)
    assert missing.value.status == 404

    peers = env.net.read_namespaced_network_policy(f"{name}-mcp", env.namespace).spec.ingress[0]._from
    gateway = [
        p
        for p in peers
        if p.pod_selector and "gateway.networking.k8s.io/gateway-name" in (p.pod_selector.match_labels or {})
    ]
    (peer,) = gateway
    assert peer.pod_selector.match_labels == {"gateway.networking.k8s.io/gateway-name": "public"}
    assert peer.namespace_selector.match_labels == {"kubernetes.io/metadata.name": "gateways"}
    chp = {"hub.jupyter.org/network-access-singleuser": "true"}
    assert any(p.pod_selector and p.pod_selector.match_labels == chp for p in peers)


def test_the_pass_repairs_a_deleted_httproute_and_the_pod_takes_it_along(env: Env) -> None:
    name = env.core.create_namespaced_pod(env.namespace, user_pod("hana")).metadata.name
    first = eventually("hana's HTTPRoute", lambda: env.httproute(f"{name}-mcp"))
    env.custom.delete_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", env.namespace, "httproutes", f"{name}-mcp"
    )

    def recreated() -> dict[str, Any] | None:
        route = env.httproute(f"{name}-mcp")
        return route if route and route["metadata"]["uid"] != first["metadata"]["uid"] else None

    eventually("the pass to re-create hana's HTTPRoute", recreated)
    env.core.delete_namespaced_pod(name, env.namespace, grace_period_seconds=0)
    eventually(
        "the garbage collector to remove hana's HTTPRoute", lambda: env.httproute(f"{name}-mcp") is None
    )
