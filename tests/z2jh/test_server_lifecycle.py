"""Scenario 5 of the Zero to JupyterHub tier: a server's life around the MCP endpoint.

On the stack of tests/harness/z2jh_stack.py (the real Z2JH hub and CHP, this project's operator
and webhook, pods run by the node agent):

- **Stop**: a server stopped through the hub API leaves nothing behind: our CHP route
  ``/user/<name>/mcp`` is gone from CHP's table (read through CHP's REST API), the token is revoked
  at the hub (the Secret's token gets 403 from ``/hub/api/user``, 200 before), the token Secret is
  released and gone, and the pod's network namespace and processes are gone from this machine.
- **CHP restart**: CHP keeps routes in memory, so a restart empties its table; our route is back
  within one reconcile interval (the operator's ``MCP_RECONCILE_INTERVAL``, small here) and answers
  (the sidecar's 401, then a real MCP call), and the hub's own user route comes back by the hub's
  check (``JupyterHub.last_activity_interval``, small here; its ``check_routes`` leaves ours alone).
- **Operator down during a spawn**: the webhook is registered with the chart's ``failurePolicy``
  (``Ignore``), so with the operator down the API server admits the pod as KubeSpawner sent it and
  the user still spawns, without the sidecar. Once the operator is back it does not (cannot: a
  pod's containers are immutable) wire that pod: no token Secret, no CHP route; it reports it, the
  MCPPolicy status counting it in ``matched`` but not in ``injected`` (its ``Ready`` condition
  stays True, "n/n injected pods wired": only the two counts show the pod without MCP). The
  server's next start is injected and reachable, which is what "wired once the operator is back"
  means for such a pod.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
import yaml
from kubernetes import client
from mcp_operator.constants import ANN_INJECTED

from tests.harness.mcp import mcp_client
from tests.harness.paths import REPO, eventually
from tests.harness.z2jh_stack import McpStack, running_stack

pytestmark = [pytest.mark.z2jh, pytest.mark.controlplane, pytest.mark.hub]

RECONCILE_INTERVAL = 3.0
HUB_CHECK_INTERVAL = 5  # JupyterHub.last_activity_interval: the hub's check_routes runs with it
# Slack on top of an interval: a loaded two-core machine, a CHP API call, the pass itself.
SLACK = 10.0
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


@pytest.fixture(scope="module")
def stack(
    controlplane: Any, node_agent: Any, z2jh_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[McpStack]:
    values = {"hub": {"config": {"JupyterHub": {"last_activity_interval": HUB_CHECK_INTERVAL}}}}
    workdir = tmp_path_factory.mktemp("z2jh-operator")
    with running_stack(
        controlplane, node_agent, z2jh_factory, workdir, values=values, reconcile_interval=RECONCILE_INTERVAL
    ) as stack:
        yield stack


def endpoint(stack: McpStack, user: str) -> str:
    return f"{stack.z2jh.public_url}/user/{user}/mcp"


def route_path(user: str) -> str:
    return f"/user/{user}/mcp"


def hub_route_path(user: str) -> str:
    """The hub's route for a user's default server as CHP keys it (CHP drops the trailing slash)."""
    return f"/user/{user}"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def netns_names() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def pod_exists(stack: McpStack, name: str) -> bool:
    try:
        stack.core.read_namespaced_pod(name, stack.namespace)
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def metric(stack: McpStack, name: str, **labels: str) -> float:
    """One sample of the operator's /metrics (0 when it has none yet)."""
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    for line in stack.operator.metrics().splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            return float(value)
    return 0.0


def sidecar_answers(stack: McpStack, user: str) -> bool:
    """The sidecar's own 401 (a Bearer challenge) at the public path through CHP, not Jupyter's 404."""
    reply = httpx.post(endpoint(stack, user), json=TOOLS_LIST, headers=MCP_HEADERS, timeout=10)
    return reply.status_code == 401 and reply.headers.get("www-authenticate", "").startswith("Bearer")


def test_stopping_a_server_removes_its_route_token_secret_and_pod(stack: McpStack, node_agent: Any) -> None:
    user = "carol"
    stack.spawn(user)
    secret = stack.token_secret(user)
    pod = stack.pod_name(user)
    ip = stack.core.read_namespaced_pod(pod, stack.namespace).status.pod_ip
    route = eventually("carol's CHP route", lambda: stack.chp_routes().get(route_path(user)), timeout=30)
    assert route["target"].startswith(f"http://{ip}:"), route
    assert stack.chp_routes()[hub_route_path(user)]["target"] == f"http://{ip}:8888"
    me = stack.z2jh.api("GET", "/user", token=secret["token"])
    assert me.status_code == 200 and me.json()["name"] == user, me.text
    netns = node_agent.netns_of(stack.namespace, pod)
    pids = [node_agent.container_pid(stack.namespace, pod, c) for c in ("notebook", "mcp-sidecar")]
    assert netns in netns_names() and all(alive(p) for p in pids)

    stack.stop_server(user)

    eventually("carol's CHP route to go", lambda: route_path(user) not in stack.chp_routes(), timeout=30)
    eventually(
        "carol's token to be revoked at the hub",
        lambda: stack.z2jh.api("GET", "/user", token=secret["token"]).status_code == 403,
        timeout=60,
        every=1,
    )
    eventually(
        "carol's token Secret to be released and gone", lambda: stack.read_secret(user) is None, timeout=60
    )
    eventually("carol's pod object to go", lambda: not pod_exists(stack, pod), timeout=60)
    eventually("carol's network namespace to go", lambda: netns not in netns_names(), timeout=30)
    eventually("carol's container processes to go", lambda: not any(alive(p) for p in pids), timeout=30)
    assert node_agent.runner(stack.namespace, pod) is None
    # Nothing of ours is left in CHP for the namespace, and the hub's user route went with the server.
    routes = stack.chp_routes()
    assert hub_route_path(user) not in routes and route_path(user) not in routes, routes


async def test_a_chp_restart_is_healed_by_the_reconcile_pass_and_the_hubs_check(stack: McpStack) -> None:
    user = "dave"
    stack.spawn(user)
    secret = stack.token_secret(user)
    ours = eventually("dave's CHP route", lambda: stack.chp_routes().get(route_path(user)), timeout=30)
    assert eventually("dave's endpoint through CHP", lambda: sidecar_answers(stack, user), timeout=30)

    adds_before = metric(stack, "mcp_operator_proxy_requests_total", verb="add")
    stack.z2jh.restart_proxy()
    restarted = time.monotonic()
    print(f"\nCHP's table right after its restart: {sorted(stack.chp_routes())}")

    back = eventually(
        "our route to be re-added after the CHP restart",
        lambda: stack.chp_routes().get(route_path(user)),
        timeout=RECONCILE_INTERVAL + SLACK,
        every=0.2,
    )
    took = time.monotonic() - restarted
    assert back["target"] == ours["target"], (back, ours)
    # The operator put it back (the restart really emptied the table): one more add request.
    assert metric(stack, "mcp_operator_proxy_requests_total", verb="add") > adds_before
    print(f"our route was back {took:.1f} s after CHP's restart (reconcile interval {RECONCILE_INTERVAL} s)")
    hub_route = eventually(
        "the hub's own route for dave to be re-added by its check",
        lambda: stack.chp_routes().get(hub_route_path(user)),
        timeout=HUB_CHECK_INTERVAL + SLACK,
        every=0.5,
    )
    assert hub_route.get("jupyterhub") is True and hub_route.get("user") == user, hub_route
    # The hub's check left ours alone, and the endpoint answers through the restarted CHP.
    assert stack.chp_routes()[route_path(user)]["target"] == ours["target"]
    assert sidecar_answers(stack, user)
    async with mcp_client(endpoint(stack, user), secret["token"]) as mcp:
        assert "insert_and_execute" in {t.name for t in (await mcp.list_tools()).tools}


def test_the_webhook_fails_open_like_the_charts(stack: McpStack) -> None:
    """The harness registers the webhook with the chart's failurePolicy (what the next test relies on)."""
    chart = yaml.safe_load((REPO / "charts" / "jupyterhub-mcp" / "values.yaml").read_text())
    registered = client.AdmissionregistrationV1Api(stack.api).read_mutating_webhook_configuration(
        stack.operator.webhook_configuration()["metadata"]["name"]
    )
    assert (
        [w.failure_policy for w in registered.webhooks] == [chart["webhook"]["failurePolicy"]] == ["Ignore"]
    )


async def test_a_spawn_while_the_operator_is_down_succeeds_and_the_next_start_is_injected(
    stack: McpStack,
) -> None:
    user = "erin"
    pod = stack.pod_name(user)
    stack.operator.stop()
    try:
        stack.spawn(user)  # the webhook's URL refuses connections: the API server admits the pod as is
        admitted = stack.core.read_namespaced_pod(pod, stack.namespace)
        assert ANN_INJECTED not in (admitted.metadata.annotations or {})
        assert "mcp-sidecar" not in [
            c.name for c in [*(admitted.spec.init_containers or ()), *admitted.spec.containers]
        ]
    finally:
        stack.operator.start()

    injected_now = sum(
        1
        for p in stack.core.list_namespaced_pod(
            stack.namespace, label_selector="component=singleuser-server"
        ).items
        if ANN_INJECTED in (p.metadata.annotations or {}) and not p.metadata.deletion_timestamp
    )

    def reported() -> dict[str, Any] | None:
        status = stack.policy_status()
        counted = status.get("matched") == injected_now + 1 and status.get("injected") == injected_now
        return status if counted else None

    status = eventually(
        "the policy status to count erin's pod as matched, not injected", reported, timeout=60
    )
    print(f"\npolicy status with erin's uninjected pod: {status}")
    # The pod cannot be wired: no sidecar to route to, so no token and no route, across passes.
    # The operator restarted with erin's pod already there: two passes make sure one ran over it.
    eventually(
        "two reconcile passes after the operator came back",
        lambda: metric(stack, "mcp_operator_reconcile_passes_total", outcome="ok") >= 2,
        timeout=2 * RECONCILE_INTERVAL + SLACK,
    )
    assert stack.read_secret(user) is None
    assert route_path(user) not in stack.chp_routes()

    # The server's next start goes through the webhook again: injected, token, route, reachable.
    stack.stop_server(user)
    eventually("erin's old pod to go", lambda: not pod_exists(stack, pod), timeout=60)
    stack.spawn(user)
    restarted = stack.core.read_namespaced_pod(pod, stack.namespace)
    assert ANN_INJECTED in (restarted.metadata.annotations or {})
    assert "mcp-sidecar" in [c.name for c in restarted.spec.init_containers or ()]
    secret = stack.token_secret(user)
    assert secret["url"] == endpoint(stack, user)
    eventually("erin's CHP route", lambda: stack.chp_routes().get(route_path(user)), timeout=30)
    assert eventually("erin's endpoint through CHP", lambda: sidecar_answers(stack, user), timeout=30)
    async with mcp_client(endpoint(stack, user), secret["token"]) as mcp:
        assert "insert_and_execute" in {t.name for t in (await mcp.list_tools()).tools}
    eventually(
        "the policy status to count erin's pod as injected",
        lambda: (s := stack.policy_status()).get("matched") == s.get("injected") == injected_now + 1,
        timeout=60,
    )
