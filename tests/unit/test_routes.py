"""The proxy route of an injected pod and the pass's route repairs (pure)."""

from __future__ import annotations

import copy
from typing import Any

from mcp_operator.children import parse_ingress_selector
from mcp_operator.constants import ROUTE_MARK
from mcp_operator.podinfo import service_prefix
from mcp_operator.policy import Policy
from mcp_operator.reconcile import plan_repairs
from mcp_operator.routes import HUB_ROUTE_KEY, ProxyRoute, build_proxy_route, is_ours, plan_routes

SELECTOR = parse_ingress_selector("app.kubernetes.io/name=ingress-nginx")


def pod(
    user: str = "alice",
    uid: str = "u1",
    *,
    prefix: str | None = None,
    ip: str | None = "10.1.2.3",
    port: int = 8890,
    phase: str = "Running",
) -> dict[str, Any]:
    env = [{"name": "JUPYTERHUB_USER", "value": user}]
    if prefix is not None:
        env.append({"name": "JUPYTERHUB_SERVICE_PREFIX", "value": prefix})
    sidecar = {"name": "mcp-sidecar", "ports": [{"name": "mcp", "containerPort": port}]}
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {
        "metadata": {
            "name": f"jupyter-{user}",
            "namespace": "jhub",
            "uid": uid,
            "labels": {"component": "singleuser-server"},
            "annotations": {"hub.jupyter.org/username": user, "mcp.jupyterhub.org/injected": "pol/1"},
        },
        "spec": {"initContainers": [sidecar], "containers": [{"name": "notebook", "env": env}]},
        "status": status,
    }


def policy(**route: Any) -> Policy:
    return Policy.from_object({"metadata": {"name": "pol", "generation": 1}, "spec": {"route": route}})


def served(route: ProxyRoute) -> dict[str, Any]:
    """What CHP's GET /api/routes says of a route we added: our data, the target, its activity."""
    return {
        **copy.deepcopy(dict(route.data)),
        "target": route.target,
        "last_activity": "2026-01-01T00:00:00Z",
    }


# A route the hub added for alice's server: JupyterHub's client puts "jupyterhub" in its data.
HUB_ROUTE = {"/user/alice/": {"user": "alice", "server_name": "", HUB_ROUTE_KEY: True, "target": "http://x"}}


def test_path_from_the_pods_own_prefix_and_target_on_the_injected_port() -> None:
    route = build_proxy_route(pod(prefix="/jhub/user/alice/", port=8891), policy())
    assert route is not None
    assert route.path == "/jhub/user/alice/mcp"  # hub.baseUrl /jhub/ is in the prefix the hub handed over
    assert route.target == "http://10.1.2.3:8891"
    assert route.data == {ROUTE_MARK: True, "namespace": "jhub", "pod": "jupyter-alice", "uid": "u1"}
    # a named server's prefix, and without the variable: /user/<name>/ from the annotations
    assert build_proxy_route(pod(prefix="/user/alice/lab/"), policy()).path == "/user/alice/lab/mcp"  # type: ignore[union-attr]
    assert build_proxy_route(pod("a.b@x.org"), policy()).path == "/user/a.b@x.org/mcp"  # type: ignore[union-attr]
    assert service_prefix(pod(prefix="/user/alice")) == "/user/alice/"


def test_ipv6_target_is_bracketed() -> None:
    route = build_proxy_route(pod(ip="fd00::7"), policy())
    assert route is not None and route.target == "http://[fd00::7]:8890"


def test_no_route_before_an_ip_after_the_pod_is_done_or_in_other_modes() -> None:
    assert build_proxy_route(pod(ip=None), policy()) is None
    assert build_proxy_route(pod(phase="Succeeded"), policy()) is None
    gone = pod()
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert build_proxy_route(gone, policy()) is None
    for mode in ("ingress", "gateway", "none"):
        assert build_proxy_route(pod(), policy(mode=mode)) is None
    assert build_proxy_route(pod(), policy(enabled=False)) is None


def test_our_routes_never_look_like_the_hubs() -> None:
    route = build_proxy_route(pod(), policy())
    assert route is not None
    # the hub's get_all_routes skips routes without "jupyterhub"; its user routes carry "user"
    assert HUB_ROUTE_KEY not in route.data and "user" not in route.data and "server_name" not in route.data
    assert is_ours(served(route))
    assert not is_ours(HUB_ROUTE["/user/alice/"])
    assert not is_ours({**served(route), HUB_ROUTE_KEY: True})  # marked by the hub: its, not ours
    assert not is_ours({"target": "http://x"})


def test_plan_adds_what_is_missing_or_moved_and_deletes_our_stale_ones() -> None:
    alice = build_proxy_route(pod(), policy())
    bob = build_proxy_route(pod("bob", "u2", ip="10.1.2.4"), policy())
    assert alice is not None and bob is not None
    in_place = {**HUB_ROUTE, alice.path: served(alice), bob.path: served(bob)}
    assert not plan_routes([alice, bob], in_place, "jhub")

    # a CHP restart: only CHP's default route is left
    plan = plan_routes([alice, bob], {"/": {"target": "http://hub:8081"}}, "jhub")
    assert plan.add == [alice, bob] and plan.delete == []

    moved = {**in_place, bob.path: {**served(bob), "target": "http://10.9.9.9:8890"}}
    assert plan_routes([alice, bob], moved, "jhub").add == [bob]
    recreated = {**in_place, bob.path: {**served(bob), "uid": "u-old"}}  # same name, earlier pod
    assert plan_routes([alice, bob], recreated, "jhub").add == [bob]

    # bob's pod is gone: his route of ours goes, the hub's routes and other namespaces' stay
    other_ns = {**served(bob), "namespace": "other"}
    plan = plan_routes([alice], {**in_place, "/user/carol/mcp": other_ns}, "jhub")
    assert plan.add == [] and plan.delete == [bob.path]


def test_a_route_that_is_not_ours_is_never_touched_even_on_our_path() -> None:
    alice = build_proxy_route(pod(), policy())
    assert alice is not None
    foreign = {alice.path: {"target": "http://elsewhere:80", HUB_ROUTE_KEY: True}}
    assert not plan_routes([alice], foreign, "jhub")
    assert not plan_routes([], {**HUB_ROUTE, **foreign}, "jhub")


def test_the_pass_plans_routes_from_the_chp_table() -> None:
    p = policy()
    alice, bob = pod(), pod("bob", "u2", ip=None)  # bob has no IP yet: no route wanted
    route = build_proxy_route(alice, p)
    assert route is not None
    children: list[dict[str, Any]] = []
    table = {**HUB_ROUTE, route.path: served(route)}
    idle = plan_repairs([alice, bob], children, [], [p], SELECTOR, proxy_routes=table, namespace="jhub")
    assert not idle.routes and idle.routes_intact == [route]

    restarted = plan_repairs([alice, bob], children, [], [p], SELECTOR, proxy_routes={}, namespace="jhub")
    assert restarted.routes.add == [route] and restarted

    # alice's pod is gone (not listed); the policy no longer routes through the proxy: both delete
    for pods, policies in (([], [p]), ([alice], [policy(mode="ingress")])):
        gone = plan_repairs(pods, children, [], policies, SELECTOR, proxy_routes=table, namespace="jhub")
        assert gone.routes.delete == [route.path] and gone.routes.add == []

    # CHP not read (unreachable, or no policy routes through it): no route repairs at all
    unknown = plan_repairs([alice], children, [], [p], SELECTOR, proxy_routes=None, namespace="jhub")
    assert not unknown.routes and unknown.routes_intact == []


def test_the_prefix_is_the_notebook_containers_the_one_the_sidecar_copies() -> None:
    """Not named `notebook` (a KubeSpawner profile renamed it): the container with notebook-port,
    as the webhook picks it; another container's variable of the same name never counts."""
    p = pod(prefix="/user/alice/")
    notebook = p["spec"]["containers"][0]
    notebook["name"], notebook["ports"] = "lab", [{"name": "notebook-port", "containerPort": 8888}]
    other = {"name": "helper", "env": [{"name": "JUPYTERHUB_SERVICE_PREFIX", "value": "/elsewhere/"}]}
    p["spec"]["containers"].insert(0, other)
    assert service_prefix(p) == "/user/alice/"
    notebook["env"] = [{"name": "JUPYTERHUB_SERVICE_PREFIX", "value": "/jhub/user/alice/"}]
    assert service_prefix(p) == "/jhub/user/alice/"
    del notebook["env"]
    assert service_prefix(p) == "/user/alice/"  # not on the notebook: from the pod's annotations
