"""Route mode proxy against the real configurable-http-proxy and the real control plane: the real
operator adds each Running pod's `<JUPYTERHUB_SERVICE_PREFIX>mcp` route through CHP's REST API,
with the token from a Secret shaped like Zero to JupyterHub's `hub`; removes it with the pod; its
periodic pass heals a CHP restart and deletes stale routes of ours; the hub's routes are never
touched, and the hub's own CHP client (JupyterHub's `get_all_routes`, what its `check_routes` works
from) never sees ours. kwok pod IPs are not reachable: targets are checked by value.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from jupyterhub.proxy import ConfigurableHTTPProxy
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from mcp_operator.constants import PROXY_TOKEN_KEY, PROXY_TOKEN_SECRET, ROUTE_MARK
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.chp import ChpProcess
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

RECONCILE_INTERVAL = 2
# A route JupyterHub adds for a user server (its client puts "jupyterhub" into every route's data).
HUB_ROUTE = ("/user/zed", "http://10.0.0.99:8888", {"user": "zed", "server_name": "", "jupyterhub": True})


class Env:
    def __init__(self, api: client.ApiClient, namespace: str, op: OperatorProcess, chp: ChpProcess) -> None:
        self.api, self.namespace, self.operator, self.chp = api, namespace, op, chp
        self.core = client.CoreV1Api(api)
        self.net = client.NetworkingV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def create_pod(self, pod: dict[str, Any]) -> str:
        return self.core.create_namespaced_pod(self.namespace, pod).metadata.name

    def running_ip(self, name: str) -> str:
        def ip() -> str | None:
            pod = self.core.read_namespaced_pod(name, self.namespace)
            return pod.status.pod_ip if pod.status.phase == "Running" else None

        return eventually(f"{name} Running with an IP", ip)

    def route(self, path: str) -> dict[str, Any] | None:
        return self.chp.routes().get(path)

    def metrics(self) -> str:
        return self.operator.metrics()


def counter(metrics: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == f"{name}_total" and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def passes(env: Env) -> float:
    return counter(env.metrics(), "mcp_operator_reconcile_passes", outcome="ok")


def wait_passes(env: Env, count: int) -> None:
    start = passes(env)
    eventually(f"{count} reconcile passes", lambda: passes(env) >= start + count)


def with_prefix(pod: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The pod as KubeSpawner makes it under a hub with another base URL (hub.baseUrl)."""
    for entry in pod["spec"]["containers"][0]["env"]:
        if entry["name"] == "JUPYTERHUB_SERVICE_PREFIX":
            entry["value"] = prefix
    return pod


@pytest.fixture(scope="module")
def env(controlplane: Any, kube_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    install_crd(controlplane)
    chp = ChpProcess(tmp_path_factory.mktemp("chp"))
    chp.start()
    namespace = f"proxy-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": namespace}})
    eventually("the default service account", lambda: core.list_namespaced_service_account(namespace).items)
    # Zero to JupyterHub's Secret `hub` holds CHP's token under this key; the operator reads it.
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": PROXY_TOKEN_SECRET},
            "stringData": {PROXY_TOKEN_KEY: chp.auth_token, "hub.config.JupyterHub.cookie_secret": "x"},
        },
    )
    op = OperatorProcess(controlplane, namespace, tmp_path_factory.mktemp("operator"))
    op.env["MCP_RECONCILE_INTERVAL"] = str(RECONCILE_INTERVAL)
    op.env["MCP_PROXY_API_URL"] = chp.api_url
    client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, policy_object("everyone", {"selection": {"users": ["*"]}})
    )
    op.start()
    try:
        op.register_webhook(kube_api, "probe-user")
        yield Env(kube_api, namespace, op, chp)
    finally:
        try:
            op.unregister_webhook(kube_api)
        finally:
            op.stop()
            chp.stop()
            core.delete_namespace(namespace, propagation_policy="Background")
            log = op.text()
            print(f"\n--- operator log tail ---\n{log[-3000:]}")
            assert chp.auth_token not in log, "the proxy token reached the operator's log"


def test_a_running_pod_gets_its_route_and_no_ingress(env: Env) -> None:
    name = env.create_pod(user_pod("alice"))
    ip = env.running_ip(name)
    route = eventually("alice's route in CHP", lambda: env.route("/user/alice/mcp"))
    assert route["target"] == f"http://{ip}:8890"
    pod = env.core.read_namespaced_pod(name, env.namespace)
    assert (route[ROUTE_MARK], route["namespace"], route["pod"], route["uid"]) == (
        True,
        env.namespace,
        name,
        pod.metadata.uid,
    )
    assert "jupyterhub" not in route and "user" not in route
    # Service and NetworkPolicy as in every mode, no Ingress in this one
    env.core.read_namespaced_service(f"{name}-mcp", env.namespace)
    env.net.read_namespaced_network_policy(f"{name}-mcp", env.namespace)
    with pytest.raises(ApiException) as missing:
        env.net.read_namespaced_ingress(f"{name}-mcp", env.namespace)
    assert missing.value.status == 404


def test_the_route_path_has_the_hub_base_url_from_the_pod(env: Env) -> None:
    """hub.baseUrl /jhub/: the hub hands the pod /jhub/user/<name>/; the route follows, named
    servers and escaped names too."""
    names = [
        env.create_pod(with_prefix(user_pod("bea"), "/jhub/user/bea/")),
        env.create_pod(with_prefix(user_pod("a.b@x.org", "lab"), "/jhub/user/a.b@x.org/lab/")),
    ]
    for name, path in zip(names, ("/jhub/user/bea/mcp", "/jhub/user/a.b@x.org/lab/mcp"), strict=True):
        ip = env.running_ip(name)
        route = eventually(f"the route {path}", lambda path=path: env.route(path))
        assert route["target"] == f"http://{ip}:8890" and route["pod"] == name
    assert env.route("/user/bea/mcp") is None


def test_a_chp_restart_is_healed_by_the_next_pass(env: Env) -> None:
    names = [env.create_pod(user_pod(u)) for u in ("carl", "cleo")]
    targets = {f"/user/{n[len('jupyter-') :]}/mcp": f"http://{env.running_ip(n)}:8890" for n in names}
    for path in targets:
        eventually(f"the route {path}", lambda path=path: env.route(path))
    added_before = counter(env.metrics(), "mcp_operator_reconcile_repairs", action="route-added")
    # A new CHP process starts with an empty table (the next pass may refill it before we look:
    # what proves the healing is the pass's count of routes it re-added, below).
    env.chp.restart()

    def healed() -> bool:
        routes = env.chp.routes()
        return all(routes.get(path, {}).get("target") == target for path, target in targets.items())

    eventually("the pass to re-add every route", healed)
    after = counter(env.metrics(), "mcp_operator_reconcile_repairs", action="route-added")
    assert after >= added_before + len(targets)


def test_deleting_the_pod_removes_its_route(env: Env) -> None:
    name = env.create_pod(user_pod("dora"))
    env.running_ip(name)
    eventually("dora's route", lambda: env.route("/user/dora/mcp"))
    env.core.delete_namespaced_pod(name, env.namespace, grace_period_seconds=0)
    eventually("dora's route to go", lambda: env.route("/user/dora/mcp") is None)


def test_a_pod_whose_policy_goes_loses_its_route(env: Env) -> None:
    env.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        env.namespace,
        PLURAL,
        policy_object("emil-only", {"selection": {"users": ["emil"], "priority": 10}}),
    )
    name = env.create_pod(user_pod("emil"))
    pod = env.core.read_namespaced_pod(name, env.namespace)
    assert pod.metadata.annotations["mcp.jupyterhub.org/injected"] == "emil-only/1"
    env.running_ip(name)
    eventually("emil's route", lambda: env.route("/user/emil/mcp"))
    env.custom.delete_namespaced_custom_object(GROUP, VERSION, env.namespace, PLURAL, "emil-only")
    eventually(
        "the pass to delete the route of a pod no policy routes", lambda: env.route("/user/emil/mcp") is None
    )


def test_stale_routes_of_ours_go_and_nobody_elses_are_touched(env: Env) -> None:
    path, target, data = HUB_ROUTE
    env.chp.add_route(path, target, **data)
    env.chp.add_route("/services/other", "http://10.0.0.98:80")  # neither ours nor the hub's
    # ours by its data, but its pod is long gone: the pass deletes it
    ghost = {ROUTE_MARK: True, "namespace": env.namespace, "pod": "jupyter-ghost", "uid": "gone"}
    env.chp.add_route("/user/ghost/mcp", "http://10.0.0.97:8890", **ghost)
    # ours too, but of another namespace's operator: not this one's to judge
    env.chp.add_route("/user/far/mcp", "http://10.0.0.96:8890", **{**ghost, "namespace": "elsewhere"})
    eventually("the pass to delete the stale route", lambda: env.route("/user/ghost/mcp") is None)
    wait_passes(env, 2)
    routes = env.chp.routes()
    hub = routes["/user/zed"]
    assert (hub["target"], hub["user"], hub["jupyterhub"]) == (target, "zed", True)
    assert routes["/services/other"]["target"] == "http://10.0.0.98:80"
    assert routes["/user/far/mcp"]["namespace"] == "elsewhere"


def test_the_hubs_own_route_check_never_sees_our_routes(env: Env) -> None:
    """JupyterHub's check_routes deletes stale routes from what its `get_all_routes` returns; run
    the hub's own CHP client against this CHP: our routes are not in it, the hub's are."""
    name = env.create_pod(user_pod("fay"))
    env.running_ip(name)
    eventually("fay's route", lambda: env.route("/user/fay/mcp"))
    path, target, data = HUB_ROUTE
    env.chp.add_route(path, target, **data)
    hub_view = asyncio.run(
        ConfigurableHTTPProxy(
            api_url=env.chp.api_url, auth_token=env.chp.auth_token, should_start=False
        ).get_all_routes()
    )
    assert "/user/zed/" in hub_view
    assert not [spec for spec in hub_view if spec.endswith("/mcp/") or spec.endswith("/mcp")], hub_view


def test_an_idle_pass_writes_nothing_to_the_proxy_or_the_api_server(env: Env) -> None:
    name = env.create_pod(user_pod("gus"))
    env.running_ip(name)
    eventually("gus's route", lambda: env.route("/user/gus/mcp"))
    wait_passes(env, 2)  # whatever the wiring needed is done by now
    before = env.metrics()
    wait_passes(env, 2)
    after = env.metrics()
    for verb in ("add", "delete"):
        assert counter(after, "mcp_operator_proxy_requests", verb=verb) == counter(
            before, "mcp_operator_proxy_requests", verb=verb
        ), f"an idle pass made {verb} requests to CHP"
    kube_writes = ("create", "update", "patch", "apply", "delete")
    assert sum(counter(after, "mcp_operator_api_requests", verb=v) for v in kube_writes) == sum(
        counter(before, "mcp_operator_api_requests", verb=v) for v in kube_writes
    )
    # ...and it did ask CHP, once a pass at least
    assert counter(after, "mcp_operator_proxy_requests", verb="list") >= (
        counter(before, "mcp_operator_proxy_requests", verb="list") + 2
    )
