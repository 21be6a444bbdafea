"""The objects that wire an injected pod (pure, no I/O): a Service for the sidecar port, an
Ingress for <prefix>mcp (route mode ingress), a NetworkPolicy letting the proxy, the ingress
controller or the gateway (and extra peers) reach the port.

Every child is owned by its pod (controller, blockOwnerDeletion), so the API server's garbage
collector removes it with the pod and nothing here has to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mcp_operator.constants import ANN_GENERATION, ANN_INJECTED, LABEL_POD, LABEL_POLICY, MANAGED_BY
from mcp_operator.injection import PORT_NAME, injected_port
from mcp_operator.names import child_name, label_value
from mcp_operator.podinfo import endpoint_path
from mcp_operator.policy import Policy

DEFAULT_INGRESS_SELECTOR = "app.kubernetes.io/name=ingress-nginx"
# Zero to JupyterHub lets pods with this label reach user servers (its singleuser NetworkPolicy);
# its proxy (CHP) carries it. In the pod's own namespace: where Z2JH runs its proxy.
SINGLEUSER_ACCESS_PEER: Mapping[str, Any] = {
    "podSelector": {"matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}}
}
# The label Gateway API implementations (Istio, Envoy Gateway, ...) put on a Gateway's own pods.
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"

# ingress-nginx validates Prefix/Exact paths against this (its strict path validation); anything
# else (`a.b@x.org`) must go as ImplementationSpecific, which it passes through as a prefix.
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9/_-]*$")


class SelectorError(ValueError):
    """An --ingress-controller-selector the operator cannot parse."""


def owner_reference(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(pod: Mapping[str, Any], policy: Policy) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "name": child_name(pod),
        "namespace": meta["namespace"],
        "labels": {
            **MANAGED_BY,
            LABEL_POD: label_value(meta["name"]),
            LABEL_POLICY: label_value(policy.name),  # a policy name may be up to 253 characters
        },
        "annotations": {ANN_GENERATION: str(policy.generation)},
        "ownerReferences": [owner_reference(pod)],
    }


def pod_selector(pod: Mapping[str, Any]) -> dict[str, str]:
    """Exactly this pod: the webhook put this label on it."""
    return {LABEL_POD: label_value(pod["metadata"]["name"])}


def sidecar_port(pod: Mapping[str, Any], policy: Policy) -> int:
    """The port the pod's sidecar listens on: the one it was injected with (a policy edited since
    does not move a running sidecar), the policy's only for a pod without our container."""
    return injected_port(pod) or policy.sidecar.port


def build_service_spec(pod: Mapping[str, Any], policy: Policy) -> dict[str, Any]:
    port = sidecar_port(pod, policy)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(pod, policy),
        "spec": {
            "type": "ClusterIP",
            "selector": pod_selector(pod),
            # A numeric targetPort: a named one resolves against a native sidecar (an init container)
            # only from Kubernetes 1.32 (kubernetes#127976), native sidecars are used from 1.29.
            "ports": [{"name": PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def route_path(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(path, pathType) of the user's MCP endpoint: `<JUPYTERHUB_SERVICE_PREFIX>mcp` from the pod
    (so the hub's base URL is in it), escaped the way the hub escapes prefixes."""
    path = endpoint_path(pod)
    return path, "Prefix" if _PLAIN_PATH.match(path) else "ImplementationSpecific"


def build_ingress_spec(pod: Mapping[str, Any], policy: Policy) -> dict[str, Any] | None:
    """None unless the policy routes through an Ingress (route.mode ingress)."""
    route = policy.route
    if route.mode != "ingress":
        return None
    path, path_type = route_path(pod)
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {"service": {"name": child_name(pod), "port": {"name": PORT_NAME}}},
                }
            ]
        }
    }
    if route.host:
        rule = {"host": route.host, **rule}
    metadata = _metadata(pod, policy)
    metadata["annotations"] = {**ingress_defaults(policy), **route.annotations, **metadata["annotations"]}
    spec: dict[str, Any] = {"rules": [rule]}
    if route.ingress_class_name:
        spec["ingressClassName"] = route.ingress_class_name
    if route.tls_secret_name:
        spec["tls"] = [{"hosts": [route.host] if route.host else [], "secretName": route.tls_secret_name}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": spec}


def ingress_defaults(policy: Policy) -> dict[str, str]:
    """ingress-nginx's annotations for long calls (its read timeout is 60 s by default, executions
    run up to execution.maxTimeoutSeconds) and streams (no buffering of SSE). The policy's own
    route.annotations win; other controllers ignore these."""
    seconds = str(route_timeout_seconds(policy))
    return {
        "nginx.ingress.kubernetes.io/proxy-read-timeout": seconds,
        "nginx.ingress.kubernetes.io/proxy-send-timeout": seconds,
        "nginx.ingress.kubernetes.io/proxy-buffering": "off",
    }


def build_httproute_spec(pod: Mapping[str, Any], policy: Policy) -> dict[str, Any] | None:
    """Route mode gateway: a Gateway API HTTPRoute, `<prefix>mcp` (PathPrefix) -> the Service,
    attached to the policy's parentRefs (Zero to JupyterHub's httpRoute.gateway). Its request
    timeout outlasts the longest execution (many gateways cut requests after 15 s by default)."""
    route = policy.route
    if route.mode != "gateway":
        return None
    rule = {
        "matches": [{"path": {"type": "PathPrefix", "value": endpoint_path(pod)}}],
        "backendRefs": [{"name": child_name(pod), "port": sidecar_port(pod, policy)}],
        "timeouts": {"request": f"{route_timeout_seconds(policy)}s"},
    }
    spec: dict[str, Any] = {"parentRefs": [dict(r) for r in route.parent_refs], "rules": [rule]}
    if route.host:
        spec["hostnames"] = [route.host]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _metadata(pod, policy),
        "spec": spec,
    }


def route_timeout_seconds(policy: Policy) -> int:
    """How long a request through a route may take: the longest execution plus a margin."""
    return policy.execution.max_timeout_seconds + 60


def parse_ingress_selector(text: str) -> dict[str, Any]:
    """The operator option: `k=v,k2=v2` (pods with these labels in any namespace) or
    `ns=<k=v,...>;pod=<k=v,...>` (pods with these labels in namespaces with those labels)."""
    text = text.strip()
    if not text:
        raise SelectorError("ingress controller selector is empty")
    if ";" not in text and not text.startswith(("ns=", "pod=")):
        return {"namespaceSelector": {}, "podSelector": {"matchLabels": _labels(text)}}
    peer: dict[str, Any] = {"namespaceSelector": {}, "podSelector": {}}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, labels = part.partition("=")
        if kind not in ("ns", "pod"):
            raise SelectorError(f"ingress controller selector part {part!r} must start with ns= or pod=")
        peer["namespaceSelector" if kind == "ns" else "podSelector"] = {"matchLabels": _labels(labels)}
    return peer


def _labels(text: str) -> dict[str, str]:
    labels = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SelectorError(f"label {pair!r} in the ingress controller selector is not key=value")
        labels[key.strip()] = value.strip()
    return labels


def _any_namespace(selector: Mapping[str, Any]) -> dict[str, Any]:
    peer = dict(selector)
    if "podSelector" in peer and "namespaceSelector" not in peer:
        # Like the operator option: these pods in any namespace. A bare podSelector would mean the
        # hub's own namespace only, where ingress controllers and gateways rarely run.
        peer["namespaceSelector"] = {}
    return peer


def gateway_peers(pod: Mapping[str, Any], policy: Policy) -> list[dict[str, Any]]:
    """The pods of each parent Gateway (by the standard label, in the Gateway's namespace), or
    the policy's network.gatewaySelector."""
    if policy.network.gateway_selector:
        return [_any_namespace(policy.network.gateway_selector)]
    return [
        {
            "namespaceSelector": {
                "matchLabels": {
                    "kubernetes.io/metadata.name": ref.get("namespace") or pod["metadata"]["namespace"]
                }
            },
            "podSelector": {"matchLabels": {GATEWAY_NAME_LABEL: ref["name"]}},
        }
        for ref in policy.route.parent_refs
        if ref.get("name") and ref.get("kind", "Gateway") == "Gateway"
    ]


def network_peers(
    pod: Mapping[str, Any],
    policy: Policy,
    default_selector: Mapping[str, Any],
    extra_peers: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Who may reach the sidecar port: the pods Zero to JupyterHub lets reach user servers (its
    proxy among them), what the route mode needs (the ingress controller, the gateway's pods),
    then the operator's extra peers and the policy's (ipBlocks of a cloud load balancer...)."""
    peers = [dict(SINGLEUSER_ACCESS_PEER)]
    if policy.route.mode == "ingress":
        peers.append(_any_namespace(policy.network.ingress_controller_selector or default_selector))
    elif policy.route.mode == "gateway":
        peers.extend(gateway_peers(pod, policy))
    for peer in (*extra_peers, *policy.network.extra_peers):
        if dict(peer) not in peers:
            peers.append(dict(peer))
    return peers


def build_network_policy_spec(
    pod: Mapping[str, Any],
    policy: Policy,
    default_selector: Mapping[str, Any],
    extra_peers: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any] | None:
    """Additive: it only opens the sidecar port to `network_peers`; Zero to JupyterHub's own
    policies keep everything else as it was. None when the policy turns it off."""
    if not policy.network.enabled:
        return None
    peers = network_peers(pod, policy, default_selector, extra_peers)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(pod, policy),
        "spec": {
            "podSelector": {"matchLabels": pod_selector(pod)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": sidecar_port(pod, policy), "protocol": "TCP"}]}],
        },
    }


def build_children(
    pod: Mapping[str, Any],
    policy: Policy,
    default_selector: Mapping[str, Any],
    extra_peers: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Every child the pod should have right now (Service always; Ingress/NetworkPolicy by policy)."""
    children = [
        build_service_spec(pod, policy),
        build_ingress_spec(pod, policy),
        build_network_policy_spec(pod, policy, default_selector, extra_peers),
        build_httproute_spec(pod, policy),
    ]
    return [c for c in children if c is not None]


def injected_policy(pod: Mapping[str, Any]) -> tuple[str, int] | None:
    """(policy name, generation) from the webhook's annotation; None for pods it did not inject."""
    marker = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANN_INJECTED) or ""
    name, sep, generation = marker.rpartition("/")
    if not sep or not name or not generation.isdigit():
        return None
    return name, int(generation)
