"""A small NetworkPolicy evaluator (pure): would a CNI that enforces NetworkPolicies let this
connection through? There is no CNI on this machine (the node agent's pods share the host's
routes), so the z2jh tier checks the real objects with this instead.

The rules are Kubernetes' (networking.k8s.io/v1): a pod is isolated for a direction when any
policy of its namespace selects it with that policy type; then a connection is allowed when some
selecting policy has a rule whose peers and ports match. Both ends count: the source's egress and
the destination's ingress. Peers: podSelector (the policy's namespace, or namespaces matched by a
namespaceSelector beside it), namespaceSelector, ipBlock (cidr minus except). Ports: number or the
destination container's port name (init containers too: native sidecars), endPort, protocol (TCP
default). Not modelled: SCTP, hostNetwork pods, a CNI's own extensions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_operator.policy import labels_match  # the operator's own LabelSelector matching


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: a pod (labels, namespace and its namespace's labels, IP, named ports)."""

    namespace: str
    labels: Mapping[str, str]
    ip: str
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # container port name -> number

    @classmethod
    def of_pod(cls, pod: Mapping[str, Any], namespace_labels: Mapping[str, str]) -> Endpoint:
        spec = pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]
        ports = {
            p["name"]: p["containerPort"] for c in containers for p in c.get("ports") or () if p.get("name")
        }
        meta = pod["metadata"]
        return cls(
            namespace=meta["namespace"],
            labels=dict(meta.get("labels") or {}),
            ip=(pod.get("status") or {}).get("podIP") or "",
            namespace_labels=dict(namespace_labels),
            ports=ports,
        )


def _types(policy: Mapping[str, Any]) -> set[str]:
    spec = policy.get("spec") or {}
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        if not other.ip:
            return False
        address = ipaddress.ip_address(other.ip)
        if address not in ipaddress.ip_network(block["cidr"], strict=False):
            return False
        return not any(address in ipaddress.ip_network(e, strict=False) for e in block.get("except") or ())
    if "namespaceSelector" in peer:
        if not labels_match(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return labels_match(peer.get("podSelector"), other.labels)


def _port_matches(rule_ports: Sequence[Mapping[str, Any]] | None, port: int, destination: Endpoint) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        number = destination.ports.get(wanted) if isinstance(wanted, str) else wanted
        if number is not None and number <= port <= entry.get("endPort", number):
            return True
    return False


def _side_allows(
    policies: Sequence[Mapping[str, Any]],
    me: Endpoint,
    other: Endpoint,
    port: int,
    destination: Endpoint,
    kind: str,
) -> tuple[bool, list[str]]:
    """(allowed, the names of the policies selecting `me` for this direction)."""
    direction, peers_key = ("Ingress", "from") if kind == "ingress" else ("Egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == me.namespace
        and direction in _types(p)
        and labels_match((p.get("spec") or {}).get("podSelector"), me.labels)
    ]
    names = [p["metadata"]["name"] for p in selecting]
    if not selecting:
        return True, names
    for policy in selecting:
        for rule in (policy.get("spec") or {}).get(kind) or ():
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), port, destination):
                return True, names
    return False, names


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress_allowed: bool
    ingress_allowed: bool
    why: str


def connection_allowed(
    policies: Sequence[Mapping[str, Any]], source: Endpoint, destination: Endpoint, port: int
) -> Verdict:
    egress, egress_by = _side_allows(policies, source, destination, port, destination, "egress")
    ingress, ingress_by = _side_allows(policies, destination, source, port, destination, "ingress")
    why = (
        f"egress {'allowed' if egress else 'denied'} (source selected by {egress_by or 'none'}), "
        f"ingress {'allowed' if ingress else 'denied'} (destination selected by {ingress_by or 'none'})"
    )
    return Verdict(egress and ingress, egress, ingress, why)
