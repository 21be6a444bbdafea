"""Scenario 1 of the Zero to JupyterHub tier: the default topology (no ingress controller).

Everything on the path is the real thing: the Z2JH chart's hub (Z2JH's own config, KubeSpawner,
the `hub` ServiceAccount) and CHP (tests/harness/z2jh.py), the admission webhook and operator of
this project, and the user's pod run by the node agent (tests/harness/nodeagent.py): the real
`jupyterhub-singleuser` and the injected `jupyterhub-mcp-sidecar` in the pod's own network
namespace. A user spawns through the hub API; an MCP client reaches `/user/<name>/mcp` through CHP
with the token the operator put in the user's Secret. What the harnesses simulate is said in
their docstrings.

The stack (release, CRD, policy, operator, webhook) is tests/harness/z2jh_stack.py's
``running_stack``: the operator runs on the host with the admin kubeconfig and is told the hub's
and CHP's host addresses (`--hub-api-url`, `--proxy-api-url`): there is no cluster DNS for it on
the host. Both clients a user is handed reach the endpoint: the SDK over Streamable HTTP, and
`mcp-remote` (the stdio bridge, pinned by the lockfile) started from the Secret's `mcp.json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from kubernetes import client

from tests.harness.mcp import call, idle_stream, mcp_client, mcp_remote_client, text
from tests.harness.netpol import Endpoint, connection_allowed
from tests.harness.operator import create_policy
from tests.harness.paths import REPO, eventually
from tests.harness.z2jh import deep_merge
from tests.harness.z2jh_stack import McpStack, running_stack

pytestmark = [pytest.mark.z2jh, pytest.mark.controlplane, pytest.mark.hub]

USERS = ("alice", "bob")
MISROUTED = "carol"


@pytest.fixture(scope="module")
def stack(
    controlplane: Any, node_agent: Any, z2jh_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[McpStack]:
    workdir = tmp_path_factory.mktemp("z2jh-operator")
    with running_stack(controlplane, node_agent, z2jh_factory, workdir) as stack:
        # carol's policy routes by Ingress, which nothing reads on this topology: the 404 a stock
        # Z2JH gave before proxy mode, which the Reachable check must report.
        wrong = {"selection": {"users": [MISROUTED], "priority": 10}, "route": {"mode": "ingress"}}
        create_policy(stack.api, stack.namespace, "ingress-without-controller", wrong)
        for user in (*USERS, MISROUTED):
            stack.spawn(user)
        yield stack


def test_the_spawned_pod_is_injected_and_scheduled_on_the_node_agent(
    stack: McpStack, node_agent: Any
) -> None:
    pod = stack.core.read_namespaced_pod("jupyter-alice", stack.z2jh.namespace)
    assert pod.spec.node_name == node_agent.node_name
    assert "mcp-sidecar" in [c.name for c in pod.spec.init_containers or ()]
    assert pod.status.pod_ip and pod.status.phase == "Running"


def test_the_policy_status_says_every_endpoint_answers_as_the_sidecar(stack: McpStack) -> None:
    """The operator's Reachable check asked each endpoint through CHP without a token and got the
    sidecar's 401: a pod Event and the policy's counts say so."""
    eventually(
        "both endpoints counted reachable",
        lambda: stack.policy_status().get("reachable") == len(USERS),
        timeout=60,
        every=1,
    )
    assert stack.policy_status().get("unreachable") == 0
    events = stack.core.list_namespaced_event(
        stack.namespace, field_selector="involvedObject.name=jupyter-alice"
    )
    reached = [e for e in events.items if e.reason == "MCPReachable"]
    assert reached and "/user/alice/mcp answered 401" in reached[0].message, [e.reason for e in events.items]


def test_an_endpoint_nothing_routes_is_reported_unreachable(stack: McpStack) -> None:
    """Mode ingress with no ingress controller: the request reaches carol's Jupyter through CHP,
    not the sidecar. The policy says so, and carol's pod gets a Warning saying why."""
    eventually(
        "carol's endpoint counted unreachable",
        lambda: stack.policy_status("ingress-without-controller").get("unreachable") == 1,
        timeout=90,
        every=1,
    )
    events = stack.core.list_namespaced_event(
        stack.namespace, field_selector="involvedObject.name=jupyter-carol"
    )
    (warning,) = [e for e in events.items if e.reason == "MCPUnreachable"]
    assert warning.type == "Warning" and "/user/carol/mcp answered" in warning.message, warning.message
    assert "Bearer" in warning.message or "404" in warning.message


async def test_an_mcp_client_reaches_the_users_endpoint_through_chp(stack: McpStack) -> None:
    secret = stack.token_secret("alice")
    url = f"{stack.z2jh.public_url}/user/alice/mcp"
    assert secret["url"] == url  # what the Secret advertises is where the endpoint answers
    async with mcp_client(url, secret["token"]) as mcp:
        tools = {t.name for t in (await mcp.list_tools()).tools}
        assert {"create_notebook", "insert_and_execute"} <= tools, tools
        await call(mcp, "create_notebook", path="z2jh.ipynb")
        code = "import os; print('user:', os.environ['JUPYTERHUB_USER'])"
        ran = await call(mcp, "insert_and_execute", path="z2jh.ipynb", source=code)
        assert "user: alice" in text(ran)


def test_another_users_token_is_refused_and_no_token_is_401(stack: McpStack) -> None:
    bob = stack.token_secret("bob")
    url = f"{stack.z2jh.public_url}/user/alice/mcp"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    foreign = httpx.post(url, json=body, headers={**headers, "Authorization": f"Bearer {bob['token']}"})
    assert foreign.status_code == 403, foreign.text
    anonymous = httpx.post(url, json=body, headers=headers)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")


def remote_entry(stack: McpStack, user: str) -> dict[str, Any]:
    """The ``mcpServers`` entry of the Secret's ``mcp.json`` (``npx -y mcp-remote <url> ...``)."""
    secret = stack.token_secret(user)
    server = json.loads(secret["mcp.json"])["mcpServers"]["jupyterhub"]
    assert f"{stack.z2jh.public_url}/user/{user}/mcp" in server["args"]
    assert server["env"]["AUTH_HEADER"] == f"Bearer {secret['token']}"
    return server


async def test_mcp_remote_reaches_the_endpoint_through_chp(stack: McpStack, tmp_path: Any) -> None:
    """The stdio bridge nobody here wrote, started from the Secret's ``mcp.json`` exactly as handed
    out. proxy-public here (as on a Z2JH without ``proxy.https``) is plain HTTP at an IP, which
    mcp-remote refuses unless the entry says ``--allow-http`` (it did not, once: this caught it)."""
    server = remote_entry(stack, "bob")
    async with mcp_remote_client(server, tmp_path) as mcp:
        tools = {t.name for t in (await mcp.list_tools()).tools}
        assert "insert_and_execute" in tools, tools
        await call(mcp, "create_notebook", path="remote.ipynb")
        code = "import os; print('remote user:', os.environ['JUPYTERHUB_USER'])"
        ran = await call(mcp, "insert_and_execute", path="remote.ipynb", source=code)
        assert "remote user: bob" in text(ran)


async def test_an_idle_event_stream_stays_open_through_chp(stack: McpStack) -> None:
    """Nothing flows on an agent's GET stream between notifications but the SDK's keep-alive
    comment every 15 s; CHP (no idle timeout of its own on Z2JH's arguments) passes them and keeps
    the stream open."""
    secret = stack.token_secret("alice")
    url = f"{stack.z2jh.public_url}/user/alice/mcp"
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret['token']}"}) as http:
        stream = await idle_stream(http, url, seconds=20)
    assert stream.closed_after is None, f"CHP closed the idle stream after {stream.closed_after:.1f} s"
    assert stream.pings, "no keep-alive comment reached the client through CHP in 20 s"


def docs_proxy_egress_values() -> dict[str, Any]:
    """The Z2JH values docs/zero-to-jupyterhub.md gives for CNIs that enforce egress."""
    doc = (REPO / "docs" / "zero-to-jupyterhub.md").read_text()
    after = doc.split("On a CNI that enforces egress", 1)[1]
    block = after.split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)


def test_network_policies_let_chp_reach_the_sidecar_and_nobody_else(stack: McpStack) -> None:
    """The real NetworkPolicies of the namespace (Z2JH's and ours), judged by the evaluator of
    tests/harness/netpol.py (no CNI here enforces them): on the user pod's side CHP may reach the
    sidecar port (ours adds it beside Z2JH's notebook port) and a pod without Z2JH's access label
    may not. On CHP's side Z2JH's default egress admits private IPs on any port; with that rule
    off (``privateIPs: false``) only the notebook port is left, and the values the docs give for
    that case admit the sidecar port again (each rendered by the real Z2JH chart)."""
    net = client.NetworkingV1Api(stack.api)
    policies = [
        stack.api.sanitize_for_serialization(p)
        for p in net.list_namespaced_network_policy(stack.namespace).items
    ]
    namespace_labels = stack.core.read_namespace(stack.namespace).metadata.labels or {}

    def endpoint_of(name: str) -> Endpoint:
        pod = stack.api.sanitize_for_serialization(stack.core.read_namespaced_pod(name, stack.namespace))
        return Endpoint.of_pod(pod, namespace_labels)

    (proxy_pod,) = stack.core.list_namespaced_pod(stack.namespace, label_selector="component=proxy").items
    chp, alice = endpoint_of(proxy_pod.metadata.name), endpoint_of("jupyter-alice")
    (sidecar,) = [c for c in stack.user_pod("alice").spec.init_containers or () if c.name == "mcp-sidecar"]
    port = sidecar.ports[0].container_port
    stranger = Endpoint(stack.namespace, {"app": "curious"}, "10.213.0.250", namespace_labels)

    assert connection_allowed(policies, chp, alice, 8888).allowed  # Z2JH's own path, as a check
    to_sidecar = connection_allowed(policies, chp, alice, port)
    assert to_sidecar.allowed, to_sidecar.why
    refused = connection_allowed(policies, stranger, alice, port)
    assert not refused.ingress_allowed, refused.why
    without_ours = [p for p in policies if p["metadata"]["name"] != "jupyter-alice-mcp"]
    assert not connection_allowed(without_ours, chp, alice, port).ingress_allowed  # ours is what admits it

    def with_proxy_policy(extra: dict[str, Any]) -> list[dict[str, Any]]:
        """The installed policies with Z2JH's proxy policy rendered from the release's values + extra."""
        values = stack.z2jh.workdir / "netpol-values.yaml"
        values.write_text(yaml.safe_dump(deep_merge(stack.z2jh.values, extra)))
        rendered = stack.z2jh.controlplane.helm(
            "template",
            stack.z2jh.release,
            str(stack.z2jh.chart),
            "-n",
            stack.namespace,
            "-f",
            str(values),
            "--show-only",
            "templates/proxy/netpol.yaml",
        )
        proxy_policy = yaml.safe_load(rendered)
        proxy_policy["metadata"]["namespace"] = stack.namespace
        kept = [p for p in policies if p["metadata"]["name"] != proxy_policy["metadata"]["name"]]
        assert len(kept) == len(policies) - 1  # it replaces the installed one
        return [*kept, proxy_policy]

    no_private = {"proxy": {"chp": {"networkPolicy": {"egressAllowRules": {"privateIPs": False}}}}}
    closed = connection_allowed(with_proxy_policy(no_private), chp, alice, port)
    assert not closed.egress_allowed, closed.why
    reopened = connection_allowed(
        with_proxy_policy(deep_merge(no_private, docs_proxy_egress_values())), chp, alice, port
    )
    assert reopened.allowed, reopened.why
