"""The NetworkPolicy evaluator of the z2jh tier (tests/harness/netpol.py) on its own: Kubernetes'
rules on small hand-written policies, each case as the NetworkPolicy documentation states it."""

from __future__ import annotations

from typing import Any

from mcp_operator.policy import labels_match

from tests.harness.netpol import Endpoint, connection_allowed

NS = "jhub"
USER_POD = Endpoint(NS, {"component": "singleuser-server"}, "10.0.0.5", {"name": NS}, {"notebook-port": 8888})
PROXY = Endpoint(NS, {"component": "proxy", "hub.jupyter.org/network-access-singleuser": "true"}, "10.0.0.2")
STRANGER = Endpoint("other", {"app": "x"}, "10.0.9.9", {"name": "other"})


def policy(name: str, spec: dict[str, Any], namespace: str = NS) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


SINGLEUSER = policy(
    "singleuser",
    {
        "podSelector": {"matchLabels": {"component": "singleuser-server"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "ports": [{"port": "notebook-port"}],
                "from": [
                    {"podSelector": {"matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}}}
                ],
            }
        ],
    },
)


def test_no_policy_selecting_either_end_allows_everything() -> None:
    assert connection_allowed([], STRANGER, USER_POD, 1234).allowed


def test_a_selected_destination_admits_only_matching_peers_and_ports() -> None:
    assert connection_allowed([SINGLEUSER], PROXY, USER_POD, 8888).allowed  # the named port resolves
    assert not connection_allowed([SINGLEUSER], PROXY, USER_POD, 8890).allowed  # another port
    assert not connection_allowed([SINGLEUSER], STRANGER, USER_POD, 8888).allowed  # another namespace


def test_policies_add_up() -> None:
    sidecar = policy(
        "sidecar",
        {
            "podSelector": {"matchLabels": {"component": "singleuser-server"}},
            "ingress": [{"ports": [{"port": 8890, "protocol": "TCP"}], "from": [{"podSelector": {}}]}],
        },
    )
    assert connection_allowed([SINGLEUSER, sidecar], PROXY, USER_POD, 8890).allowed
    assert not connection_allowed([SINGLEUSER, sidecar], STRANGER, USER_POD, 8890).allowed


def test_egress_of_the_source_counts_too() -> None:
    proxy_egress = policy(
        "proxy",
        {
            "podSelector": {"matchLabels": {"component": "proxy"}},
            "policyTypes": ["Ingress", "Egress"],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": {"component": "singleuser-server"}}}],
                    "ports": [{"port": 8888}],
                },
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
            ],
        },
    )
    open_ingress = policy("open", {"podSelector": {}, "ingress": [{}]})
    verdict = connection_allowed([proxy_egress, open_ingress], PROXY, USER_POD, 8890)
    assert not verdict.allowed and verdict.ingress_allowed and not verdict.egress_allowed, verdict.why
    assert connection_allowed([proxy_egress, open_ingress], PROXY, USER_POD, 8888).allowed
    public = Endpoint("web", {}, "93.184.216.34")
    assert connection_allowed([proxy_egress], PROXY, public, 443).allowed  # the ipBlock, not its except


def test_a_namespace_selector_with_a_pod_selector_means_both() -> None:
    both = policy(
        "both",
        {
            "podSelector": {},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"name": "other"}},
                            "podSelector": {"matchLabels": {"app": "y"}},
                        }
                    ]
                }
            ],
        },
    )
    assert not connection_allowed([both], STRANGER, USER_POD, 80).allowed
    friend = Endpoint("other", {"app": "y"}, "10.0.9.8", {"name": "other"})
    assert connection_allowed([both], friend, USER_POD, 80).allowed


def test_match_expressions() -> None:
    labels = {"tier": "web", "env": "prod"}
    assert labels_match({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}, labels)
    assert not labels_match(
        {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, labels
    )
    assert labels_match({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)
    assert not labels_match({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
