"""Service / Ingress / NetworkPolicy of an injected pod (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_operator.children import (
    SelectorError,
    build_children,
    build_httproute_spec,
    build_ingress_spec,
    build_network_policy_spec,
    build_service_spec,
    injected_policy,
    parse_ingress_selector,
)
from mcp_operator.names import label_value
from mcp_operator.policy import Policy

DEFAULT = parse_ingress_selector("app.kubernetes.io/name=ingress-nginx")


def pod(user: str, server: str = "", name: str = "jupyter-x") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "jhub",
            "uid": "uid-1",
            "annotations": {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": server},
        }
    }


def policy(**spec: Any) -> Policy:
    return Policy.from_object({"metadata": {"name": "pol", "generation": 4}, "spec": spec})


def test_children_are_owned_by_the_pod_and_labelled() -> None:
    for child in build_children(pod("alice"), policy(), DEFAULT):
        meta = child["metadata"]
        assert meta["name"] == "jupyter-x-mcp" and meta["namespace"] == "jhub"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": "jupyter-x",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "jupyterhub-mcp"
        assert meta["labels"]["mcp.jupyterhub.org/pod"] == "jupyter-x"
        assert meta["annotations"]["mcp.jupyterhub.org/policy-generation"] == "4"


def injected(user: str, port: int, *, native: bool = True) -> dict[str, Any]:
    """A pod as the webhook left it: its sidecar listens on `port`."""
    p = pod(user)
    sidecar = {"name": "mcp-sidecar", "ports": [{"name": "mcp", "containerPort": port, "protocol": "TCP"}]}
    notebook = {"name": "notebook", "ports": [{"name": "notebook-port", "containerPort": 8888}]}
    if native:
        p["spec"] = {"initContainers": [{"name": "block-cloud-metadata"}, sidecar], "containers": [notebook]}
    else:
        p["spec"] = {"containers": [notebook, sidecar]}
    return p


def test_service_targets_the_sidecar_port_of_this_pod_only() -> None:
    # A pod without our container (never in practice): the policy's port.
    svc = build_service_spec(pod("alice"), policy(sidecar={"port": 9000}))
    assert svc["spec"]["selector"] == {"mcp.jupyterhub.org/pod": "jupyter-x"}
    # Numeric targetPort: named ports on native sidecars resolve only from Kubernetes 1.32.
    assert svc["spec"]["ports"] == [{"name": "mcp", "port": 9000, "targetPort": 9000, "protocol": "TCP"}]


@pytest.mark.parametrize("native", [True, False])
def test_ports_are_the_ones_the_pod_was_injected_with(native: bool) -> None:
    """The policy's port changed after the pod started: its sidecar still listens where it was
    injected, so the Service and the NetworkPolicy must keep pointing there."""
    running, changed = injected("alice", 8890, native=native), policy(sidecar={"port": 9000})
    svc = build_service_spec(running, changed)
    assert svc["spec"]["ports"] == [{"name": "mcp", "port": 8890, "targetPort": 8890, "protocol": "TCP"}]
    np = build_network_policy_spec(running, changed, DEFAULT)
    assert np["spec"]["ingress"][0]["ports"] == [{"port": 8890, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("user", "server", "path", "path_type"),
    [
        ("alice", "", "/user/alice/mcp", "Prefix"),
        ("alice", "lab", "/user/alice/lab/mcp", "Prefix"),
        ("a.b@x.org", "", "/user/a.b@x.org/mcp", "ImplementationSpecific"),
        ("josé", "", "/user/jos%C3%A9/mcp", "ImplementationSpecific"),
    ],
)
def test_ingress_path(user: str, server: str, path: str, path_type: str) -> None:
    ing = build_ingress_spec(pod(user, server), policy(route={"mode": "ingress"}))
    (rule,) = ing["spec"]["rules"]
    (entry,) = rule["http"]["paths"]
    assert (entry["path"], entry["pathType"]) == (path, path_type)
    assert entry["backend"] == {"service": {"name": "jupyter-x-mcp", "port": {"name": "mcp"}}}
    assert "host" not in rule and "tls" not in ing["spec"] and "ingressClassName" not in ing["spec"]


def test_ingress_class_host_tls_annotations() -> None:
    route = {
        "mode": "ingress",
        "ingressClassName": "nginx",
        "host": "hub.example.org",
        "tlsSecretName": "hub-tls",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
    }
    ing = build_ingress_spec(pod("alice"), policy(route=route))
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"][0]["host"] == "hub.example.org"
    assert ing["spec"]["tls"] == [{"hosts": ["hub.example.org"], "secretName": "hub-tls"}]
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"


def with_prefix(p: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The pod as KubeSpawner makes it under a hub with a base URL: the prefix in the env."""
    env = [{"name": "JUPYTERHUB_SERVICE_PREFIX", "value": prefix}]
    containers = p.setdefault("spec", {}).setdefault("containers", [{"name": "notebook"}])
    next(c for c in containers if c["name"] == "notebook")["env"] = env
    return p


def test_ingress_path_has_the_hub_base_url_from_the_pod() -> None:
    """hub.baseUrl /jhub/: the hub hands the pod /jhub/user/alice/, the sidecar serves under it."""
    ing = build_ingress_spec(
        with_prefix(pod("alice"), "/jhub/user/alice/"), policy(route={"mode": "ingress"})
    )
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/jhub/user/alice/mcp"


def test_only_route_mode_ingress_makes_an_ingress() -> None:
    for mode in ("proxy", "gateway", "none"):
        kinds = [c["kind"] for c in build_children(pod("alice"), policy(route={"mode": mode}), DEFAULT)]
        assert "Ingress" not in kinds and "Service" in kinds and "NetworkPolicy" in kinds, mode
    assert build_ingress_spec(pod("alice"), policy()) is None  # the default mode is proxy
    kinds = [c["kind"] for c in build_children(pod("alice"), policy(route={"mode": "ingress"}), DEFAULT)]
    assert kinds == ["Service", "Ingress", "NetworkPolicy"]


def test_ingress_outlasts_the_longest_execution_and_does_not_buffer_streams() -> None:
    ing = build_ingress_spec(
        pod("alice"), policy(route={"mode": "ingress"}, execution={"maxTimeoutSeconds": 900})
    )
    annotations = ing["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "960"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "960"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    # the policy's own annotations win, ours (the generation) stay
    own = {
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
        "mcp.jupyterhub.org/policy-generation": "x",
    }
    ing = build_ingress_spec(pod("alice"), policy(route={"mode": "ingress", "annotations": own}))
    annotations = ing["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["mcp.jupyterhub.org/policy-generation"] == "4"


def test_gateway_mode_makes_an_httproute_to_the_service() -> None:
    refs = [{"name": "public", "namespace": "gateways", "sectionName": "https"}]
    p = policy(route={"mode": "gateway", "parentRefs": refs, "host": "hub.example.org"})
    route = build_httproute_spec(with_prefix(injected("alice", 8891), "/jhub/user/alice/"), p)
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert route["metadata"]["name"] == "jupyter-x-mcp"
    assert route["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert route["spec"] == {
        "parentRefs": refs,
        "hostnames": ["hub.example.org"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/jhub/user/alice/mcp"}}],
                "backendRefs": [{"name": "jupyter-x-mcp", "port": 8891}],
                "timeouts": {"request": "660s"},
            }
        ],
    }
    kinds = [c["kind"] for c in build_children(pod("alice"), p, DEFAULT)]
    assert kinds == ["Service", "NetworkPolicy", "HTTPRoute"]
    for mode in ("proxy", "ingress", "none"):
        assert build_httproute_spec(pod("alice"), policy(route={"mode": mode})) is None


def test_long_policy_names_fit_a_label_value() -> None:
    """Policy names may have 253 characters, label values 63: a raw long name fails the apply."""
    name = "p" * 100
    long = Policy.from_object(
        {"metadata": {"name": name, "generation": 1}, "spec": {"route": {"mode": "ingress"}}}
    )
    for child in build_children(pod("alice", name="jupyter-" + "x" * 70), long, DEFAULT):
        labels = child["metadata"]["labels"]
        assert all(len(v) <= 63 for v in labels.values()), labels
        assert labels["mcp.jupyterhub.org/policy"] == label_value(name) != name


def test_route_and_network_can_be_turned_off() -> None:
    p = policy(route={"enabled": False}, network={"enabled": False})
    assert build_ingress_spec(pod("alice"), p) is None
    assert build_network_policy_spec(pod("alice"), p, DEFAULT) is None
    assert [c["kind"] for c in build_children(pod("alice"), p, DEFAULT)] == ["Service"]


CHP = {"podSelector": {"matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}}}
NGINX = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}


def peers(p: Policy, extra: tuple[dict[str, Any], ...] = ()) -> list[dict[str, Any]]:
    np = build_network_policy_spec(pod("alice"), p, DEFAULT, extra)
    assert np is not None
    (rule,) = np["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8890, "protocol": "TCP"}]
    return rule["from"]


def test_network_policy_opens_only_the_sidecar_port_to_the_proxy_by_default() -> None:
    """Route mode proxy (the default): Zero to JupyterHub's proxy reaches the sidecar; Z2JH lets
    pods with the singleuser-access label reach user servers, and its CHP carries it. In the pod's
    own namespace (no namespaceSelector): where Z2JH runs its proxy."""
    np = build_network_policy_spec(pod("alice"), policy(), DEFAULT)
    assert np["spec"]["podSelector"] == {"matchLabels": {"mcp.jupyterhub.org/pod": "jupyter-x"}}
    assert np["spec"]["policyTypes"] == ["Ingress"]
    assert peers(policy()) == [CHP]
    assert peers(policy(route={"mode": "none"})) == [CHP]


def test_ingress_mode_adds_the_ingress_controller() -> None:
    ingress = {"mode": "ingress"}
    assert peers(policy(route=ingress)) == [CHP, NGINX]
    own = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}},
        "podSelector": {},
    }
    assert peers(policy(route=ingress, network={"ingressControllerSelector": own})) == [CHP, own]
    # the ingress controller is not let in by the other modes
    assert NGINX not in peers(policy(network={"ingressControllerSelector": NGINX}))


def test_gateway_mode_adds_each_parent_gateways_pods() -> None:
    route = {
        "mode": "gateway",
        "parentRefs": [{"name": "public", "namespace": "gateways"}, {"name": "local"}],
    }
    assert peers(policy(route=route)) == [
        CHP,
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}},
            "podSelector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": "public"}},
        },
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "jhub"}},
            "podSelector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": "local"}},
        },
    ]
    envoy = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "envoy"}}}
    assert peers(policy(route=route, network={"gatewaySelector": envoy})) == [
        CHP,
        {**envoy, "namespaceSelector": {}},
    ]


def test_extra_peers_from_the_operator_and_the_policy_come_last_once_each() -> None:
    lb = {"ipBlock": {"cidr": "10.0.0.0/8"}}
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    p = policy(network={"extraPeers": [monitoring, lb]})
    assert peers(p, (lb,)) == [CHP, lb, monitoring]
    assert peers(policy(), (CHP,)) == [CHP]


def test_policy_pod_selector_alone_means_any_namespace_like_the_option() -> None:
    only_pods = {"podSelector": {"matchLabels": {"app": "traefik"}}}
    ingress = {"mode": "ingress"}
    got = peers(policy(route=ingress, network={"ingressControllerSelector": only_pods}))
    assert got == [CHP, {**only_pods, "namespaceSelector": {}}]
    assert got[1] == parse_ingress_selector("app=traefik")
    only_namespaces = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
    assert peers(policy(route=ingress, network={"ingressControllerSelector": only_namespaces})) == [
        CHP,
        only_namespaces,
    ]


def test_ingress_selector_option() -> None:
    assert parse_ingress_selector("ns=kubernetes.io/metadata.name=ingress;pod=app=nginx,tier=edge") == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}},
        "podSelector": {"matchLabels": {"app": "nginx", "tier": "edge"}},
    }
    for bad in ("", "app", "node=x=y;pod=a=b"):
        with pytest.raises(SelectorError):
            parse_ingress_selector(bad)


def test_injected_policy_marker() -> None:
    def marked(value: str) -> dict[str, Any]:
        return {"metadata": {"annotations": {"mcp.jupyterhub.org/injected": value}}}

    assert injected_policy(marked("everyone/3")) == ("everyone", 3)
    assert injected_policy(marked("garbage")) is None
    assert injected_policy({"metadata": {}}) is None
