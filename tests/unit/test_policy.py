"""MCPPolicy parsing and matching (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_operator.constants import ANN_GROUPS
from mcp_operator.policy import Policy, PolicyError, labels_match, matches, select_policy

CRD = Path(__file__).resolve().parents[2] / "crds" / "mcppolicy.yaml"


def pod(user: str | None, labels: dict[str, str] | None = None, groups: str | None = None) -> dict[str, Any]:
    annotations = {} if user is None else {"hub.jupyter.org/username": user}
    if groups is not None:
        annotations[ANN_GROUPS] = groups
    return {"metadata": {"name": "p", "annotations": annotations, "labels": labels or {}}}


def policy(name: str = "p", **selection: Any) -> Policy:
    return Policy.from_object({"metadata": {"name": name}, "spec": {"selection": selection}})


def test_defaults_equal_the_crd_defaults() -> None:
    """The parser's defaults and the CRD's must agree: the API server applies one, tests the other."""
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]

    def default(section: str, key: str) -> Any:
        return spec[section]["properties"][key]["default"]

    p = Policy.from_object({"metadata": {"name": "x"}})
    # No image default on either side: an unset image means the operator's --sidecar-image.
    assert p.sidecar.image is None and "default" not in spec["sidecar"]["properties"]["image"]
    assert p.sidecar.port == default("sidecar", "port")
    assert dict(p.sidecar.resources) == default("sidecar", "resources")
    assert p.tools.mode == default("tools", "mode")
    assert p.execution.timeout_seconds == default("execution", "timeoutSeconds")
    assert p.execution.max_timeout_seconds == default("execution", "maxTimeoutSeconds")
    assert p.execution.output_max_chars == default("execution", "outputMaxChars")
    assert p.execution.output_max_image_bytes == default("execution", "outputMaxImageBytes")
    assert p.tokens.ttl_seconds == default("tokens", "ttlSeconds")
    assert p.tokens.rotate_before_seconds == default("tokens", "rotateBeforeSeconds")
    assert p.tokens.mount_path == default("tokens", "mountPath")
    assert p.route.mode == default("route", "mode") == "proxy"
    assert p.route.enabled is default("route", "enabled") and p.network.enabled is default(
        "network", "enabled"
    )
    assert p.selection.priority == spec["selection"]["properties"]["priority"]["default"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tools": {"mode": "root"}}, "spec.tools.mode"),
        ({"sidecar": {"port": 8888}}, "notebook port"),
        ({"execution": {"timeoutSeconds": 700}}, "timeoutSeconds"),
        ({"selection": {"users": "alice"}}, "users must be a list"),
        ({"selection": {"priority": "high"}}, "priority must be an integer"),
        ({"route": ["x"]}, "route must be an object"),
        ({"route": {"mode": "nginx"}}, "spec.route.mode must be one of"),
        ({"route": {"parentRefs": "my-gateway"}}, "parentRefs must be a list of objects"),
        (
            {"network": {"extraPeers": [{"ipBlock": {"cidr": "10.0.0.0/8"}}, "x"]}},
            "extraPeers must be a list",
        ),
    ],
)
def test_bad_policies_say_what_is_wrong(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.from_object({"metadata": {"name": "bad"}, "spec": spec})


def test_route_modes_and_the_enabled_flag_before_them() -> None:
    def route(**r: Any) -> Any:
        return Policy.from_object({"metadata": {"name": "r"}, "spec": {"route": r}}).route

    assert [route(mode=m).mode for m in ("proxy", "ingress", "gateway", "none")] == [
        "proxy",
        "ingress",
        "gateway",
        "none",
    ]
    assert route().mode == "proxy" and route().enabled
    # route.enabled false keeps meaning what it meant: no route, whatever the (defaulted) mode
    assert route(enabled=False).mode == "none" and not route(enabled=False).enabled
    assert route(enabled=False, mode="ingress").mode == "none"
    assert route(enabled=True, mode="ingress").mode == "ingress"
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    mode = schema["properties"]["spec"]["properties"]["route"]["properties"]["mode"]
    assert tuple(mode["enum"]) == ("proxy", "ingress", "gateway", "none")


def test_users_globs_and_exclusions() -> None:
    p = policy(users=["student-*", "*@example.org"], excludeUsers=["student-admin"])
    assert matches(p, pod("student-1")) and matches(p, pod("a.b@example.org"))
    assert not matches(p, pod("student-admin")) and not matches(p, pod("teacher"))
    assert not matches(p, pod("Student-1"))  # hub names are case-sensitive
    assert matches(policy(), pod("anyone"))
    assert not matches(policy(), pod(None))  # not a KubeSpawner user pod


def test_groups_come_from_the_annotation() -> None:
    p = policy(groups=["physics"])
    assert matches(p, pod("alice", groups="chemistry, physics"))
    assert not matches(p, pod("alice", groups="chemistry"))
    assert not matches(p, pod("alice"))  # no annotation: never matches a group policy


def test_pod_selector() -> None:
    sel = {
        "matchLabels": {"tier": "gpu"},
        "matchExpressions": [{"key": "course", "operator": "In", "values": ["a"]}],
    }
    assert matches(policy(podSelector=sel), pod("u", {"tier": "gpu", "course": "a"}))
    assert not matches(policy(podSelector=sel), pod("u", {"tier": "gpu", "course": "b"}))
    labels = {"x": "1"}
    assert labels_match({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert not labels_match({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)
    assert not labels_match(
        {"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["1"]}]}, labels
    )
    assert labels_match({"matchExpressions": [{"key": "y", "operator": "NotIn", "values": ["1"]}]}, labels)


def test_highest_priority_wins_ties_by_name_in_any_order() -> None:
    low, high = policy("a-low", priority=1), policy("z-high", priority=5)
    tie_b, tie_a = policy("b", priority=5), policy("a", priority=5)
    assert select_policy([low, high], pod("u")) is high
    assert select_policy([tie_b, tie_a, high], pod("u")).name == "a"
    assert select_policy([high, tie_a, tie_b], pod("u")).name == "a"
    assert select_policy([policy(users=["other"])], pod("u")) is None


def test_status_counts() -> None:
    from mcp_operator.status import policy_counts

    def user_pod(user: str, uid: str, injected: str | None = None, deleting: bool = False) -> dict[str, Any]:
        p = pod(user)
        p["metadata"]["uid"] = uid
        if injected:
            p["metadata"]["annotations"]["mcp.jupyterhub.org/injected"] = injected
        if deleting:
            p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return p

    mine = Policy.from_object(
        {"metadata": {"name": "mine", "generation": 2}, "spec": {"selection": {"users": ["a*"]}}}
    )
    other = policy("other", users=["b*"])
    pods = [
        user_pod("alice", "1", "mine/2"),  # injected, wired at generation 2
        user_pod("anna", "2", "mine/1"),  # injected, children still from generation 1
        user_pod("ada", "3"),  # matched but created while the webhook was down
        user_pod("bob", "4", "other/1"),
        user_pod("amy", "5", "mine/2", deleting=True),  # going away: not counted
    ]
    wired = {"1": ("mine", 2), "2": ("mine", 1), "4": ("other", 1)}
    counts = policy_counts(mine, pods, (mine, other), wired)
    assert counts == {"matched": 3, "injected": 2, "ready": 1, "reachable": 0, "unreachable": 0}
    # checked endpoints count among this policy's injected pods only; unchecked ones in neither
    reachable = {"1": True, "2": False, "4": True, "5": True}
    counts = policy_counts(mine, pods, (mine, other), wired, reachable)
    assert (counts["reachable"], counts["unreachable"]) == (1, 1)
