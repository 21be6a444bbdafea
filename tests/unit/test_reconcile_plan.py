"""The periodic pass's plan (pure): what drifted, what is stale, what lost its token Secret; and
nothing at all when the world already matches the spec."""

from __future__ import annotations

import copy
from typing import Any

from mcp_operator.children import build_children, parse_ingress_selector
from mcp_operator.constants import ANN_TOKEN_ID
from mcp_operator.policy import Policy
from mcp_operator.reconcile import contains, plan_repairs

SELECTOR = parse_ingress_selector("app.kubernetes.io/name=ingress-nginx")


def pod(user: str, uid: str, *, marker: str = "pol/1", phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"jupyter-{user}",
            "namespace": "jhub",
            "uid": uid,
            "labels": {"component": "singleuser-server"},
            "annotations": {"hub.jupyter.org/username": user, "mcp.jupyterhub.org/injected": marker},
        },
        "status": {"phase": phase},
    }


def policy(name: str = "pol", **spec: Any) -> Policy:
    """Route mode ingress unless told: every kind of child is there to drift."""
    spec.setdefault("route", {"mode": "ingress"})
    return Policy.from_object({"metadata": {"name": name, "generation": 1}, "spec": spec})


def as_served(child: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: our fields plus its defaults and bookkeeping."""
    served = copy.deepcopy(child)
    del served["apiVersion"]  # a list's items carry none (the Kube layer puts the kind back)
    served["metadata"].update(uid="c-" + child["metadata"]["name"], resourceVersion="7", managedFields=[])
    if child["kind"] == "Service":
        served["spec"].update(clusterIP="10.0.0.9", sessionAffinity="None", ipFamilies=["IPv4"])
    return served


def token_secret(owner_uid: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "mcp-token",
            "namespace": "jhub",
            "annotations": {ANN_TOKEN_ID: "a1"},
            "ownerReferences": [{"kind": "Pod", "uid": owner_uid, "name": "x"}],
        }
    }


def served_children(*pods: dict[str, Any], p: Policy) -> list[dict[str, Any]]:
    return [as_served(c) for one in pods for c in build_children(one, p, SELECTOR)]


def test_nothing_to_do_when_the_world_matches() -> None:
    p = policy(tokens={"issue": True})
    pods = [pod("alice", "u1"), pod("bob", "u2")]
    secrets = [token_secret("u1"), token_secret("u2")]
    repairs = plan_repairs(pods, served_children(*pods, p=p), secrets, [p], SELECTOR)
    assert not repairs
    assert sorted(uid for uid, _ in repairs.intact) == ["u1", "u2"]


def test_a_missing_or_drifted_child_rewires_its_pod() -> None:
    p = policy()
    alice, bob = pod("alice", "u1"), pod("bob", "u2")
    children = served_children(alice, bob, p=p)
    children = [
        c for c in children if not (c["kind"] == "Ingress" and c["metadata"]["name"] == "jupyter-alice-mcp")
    ]
    bob_service = next(c for c in children if c["kind"] == "Service" and "bob" in c["metadata"]["name"])
    bob_service["spec"]["ports"][0]["targetPort"] = 9999  # edited by hand
    repairs = plan_repairs([alice, bob], children, [], [p], SELECTOR)
    assert sorted(x["metadata"]["uid"] for x, _ in repairs.rewire) == ["u1", "u2"]
    assert repairs.delete == []


def test_children_of_a_gone_pod_or_policy_or_no_longer_matching_are_deleted() -> None:
    p = policy(selection={"users": ["alice", "bob"]})
    alice, bob, carol = pod("alice", "u1"), pod("bob", "u2"), pod("carol", "u3")
    children = served_children(alice, bob, carol, p=p)
    narrowed = policy(selection={"users": ["alice"]})  # bob no longer selected
    # carol's pod is gone (not listed); bob's children must go; alice's stay.
    repairs = plan_repairs([alice, bob], children, [], [narrowed], SELECTOR)
    deleted = sorted(name for _, _, name in repairs.delete)
    assert deleted == sorted(["jupyter-bob-mcp"] * 3 + ["jupyter-carol-mcp"] * 3)
    assert repairs.rewire == []
    # The policy deleted: every child goes.
    gone = plan_repairs([alice, bob], children, [], [], SELECTOR)
    assert len(gone.delete) == 9


def test_a_child_of_an_earlier_pod_with_the_same_name_is_not_this_pods() -> None:
    p = policy()
    old, new = pod("alice", "old-uid"), pod("alice", "new-uid")
    repairs = plan_repairs([new], served_children(old, p=p), [], [p], SELECTOR)
    assert [x["metadata"]["uid"] for x, _ in repairs.rewire] == ["new-uid"]
    assert len(repairs.delete) == 3  # the old pod's (the garbage collector may be slower)


def test_a_running_pod_without_its_token_secret_is_reissued() -> None:
    p = policy(tokens={"issue": True})
    running, pending = pod("alice", "u1"), pod("bob", "u2", phase="Pending")
    children = served_children(running, pending, p=p)
    repairs = plan_repairs([running, pending], children, [], [p], SELECTOR)
    assert [x["metadata"]["uid"] for x in repairs.reissue] == ["u1"]
    no_tokens = policy()
    assert (
        plan_repairs([running], served_children(running, p=no_tokens), [], [no_tokens], SELECTOR).reissue
        == []
    )


def test_a_token_secret_being_deleted_counts_as_none() -> None:
    p = policy(tokens={"issue": True})
    running = pod("alice", "u1")
    children = served_children(running, p=p)

    def secret(**meta: object) -> dict:
        return {
            "metadata": {
                "name": "mcp-token-alice",
                "annotations": {"mcp.jupyterhub.org/token-id": "a1"},
                "ownerReferences": [{"kind": "Pod", "uid": "u1"}],
                **meta,
            }
        }

    assert plan_repairs([running], children, [secret()], [p], SELECTOR).reissue == []
    going = secret(deletionTimestamp="2026-01-01T00:00:00Z")
    reissue = plan_repairs([running], children, [going], [p], SELECTOR).reissue
    assert [x["metadata"]["uid"] for x in reissue] == ["u1"]


def test_pods_not_ours_are_left_alone() -> None:
    p = policy()
    plain = pod("dave", "u9")
    del plain["metadata"]["annotations"]["mcp.jupyterhub.org/injected"]
    going = pod("erin", "u8")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not plan_repairs([plain, going], [], [], [p], SELECTOR)


def test_contains_allows_server_defaults_not_changed_fields() -> None:
    desired = {"spec": {"ports": [{"port": 1, "name": "mcp"}], "selector": {"a": "b"}}}
    assert contains(
        {"spec": {"ports": [{"port": 1, "name": "mcp", "protocol": "TCP"}], "selector": {"a": "b"}}}, desired
    )
    assert not contains({"spec": {"ports": [{"port": 2, "name": "mcp"}], "selector": {"a": "b"}}}, desired)
    assert not contains({"spec": {"ports": [], "selector": {"a": "b"}}}, desired)
    assert not contains(None, desired)
