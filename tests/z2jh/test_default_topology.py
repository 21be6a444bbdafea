"""Scenario 1 of the Zero to JupyterHub tier: the default topology (no ingress controller).

Everything on the path is the real thing: the Z2JH chart's hub (Z2JH's own config, KubeSpawner,
the `hub` ServiceAccount) and CHP (tests/harness/z2jh.py), the admission webhook and operator of
this project, and the user's pod run by the node agent (tests/harness/nodeagent.py): the real
`jupyterhub-singleuser` and the injected `jupyterhub-mcp-sidecar` in the pod's own network
namespace. A user spawns through the hub API; an MCP client reaches `/user/<name>/mcp` through CHP
with the token the operator put in the user's Secret. What the harnesses simulate is said in
their docstrings.

The operator runs on the host with the admin kubeconfig and is told the hub's and CHP's host
addresses (`--hub-api-url`, `--proxy-api-url`): there is no cluster DNS for it on the host.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.harness.mcp import call, mcp_client, text
from tests.harness.operator import OperatorProcess, create_policy, install_crd
from tests.harness.paths import eventually
from tests.harness.z2jh import Z2JH

pytestmark = [pytest.mark.z2jh, pytest.mark.controlplane, pytest.mark.hub]

SERVICE = "jupyterhub-mcp"
SPAWN_TIMEOUT = 180.0  # a cold singleuser start next to a busy control plane on two cores
USERS = ("alice", "bob")


class Stack:
    def __init__(self, z2jh: Z2JH, operator: OperatorProcess, api: Any) -> None:
        self.z2jh, self.operator, self.api = z2jh, operator, api
        self.core = client.CoreV1Api(api)

    def diagnostics(self) -> str:
        return f"{self.z2jh.logs()}\n--- operator ---\n{self.operator.text()[-4000:]}"

    def spawn(self, user: str) -> None:
        self.z2jh.api("POST", f"/users/{user}")  # 201, or 409 when the user exists
        started = self.z2jh.api("POST", f"/users/{user}/server")
        assert started.status_code in (201, 202), started.text

        def ready() -> bool:
            servers = self.z2jh.api("GET", f"/users/{user}").json().get("servers") or {}
            return bool((servers.get("") or {}).get("ready"))

        eventually(f"{user}'s server to be ready", ready, timeout=SPAWN_TIMEOUT, every=1)

    def token_secret(self, user: str) -> dict[str, str]:
        def filled() -> dict[str, str] | None:
            try:
                secret = self.core.read_namespaced_secret(f"mcp-token-{user}", self.z2jh.namespace)
            except client.ApiException as e:
                if e.status == 404:
                    return None
                raise
            data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            return data if data.get("token") else None

        return eventually(f"{user}'s MCP token Secret", filled, timeout=90, every=1)


@pytest.fixture(scope="module")
def stack(
    controlplane: Any, node_agent: Any, z2jh_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    z2jh = z2jh_factory(
        values={
            "hub": {
                # The hub service the README tells a Z2JH admin to add; the chart makes its token.
                "services": {SERVICE: {}},
                "loadRoles": {SERVICE: {"scopes": ["tokens"], "services": [SERVICE]}},
            },
            # Its init container runs iptables, which the node agent maps to nothing; and the
            # agent mounts no PersistentVolumeClaims.
            "singleuser": {"cloudMetadata": {"blockWithIptables": False}, "storage": {"type": "none"}},
        },
        host_ip=node_agent.host_ip,
    )
    api = controlplane.api_client()
    install_crd(controlplane)
    namespace = z2jh.namespace
    create_policy(api, namespace, "default", {"tokens": {"issue": True}})
    workdir: Path = tmp_path_factory.mktemp("z2jh-operator")
    operator = OperatorProcess(controlplane, namespace, workdir, native_sidecar="true")
    operator.env["JUPYTERHUB_API_TOKEN"] = z2jh.secret(f"hub.services.{SERVICE}.apiToken")
    operator.env["MCP_RECONCILE_INTERVAL"] = "5"
    operator.args += [
        f"--hub-api-url={z2jh.hub_api_url}",
        f"--hub-public-url={z2jh.public_url}",
        f"--proxy-api-url={z2jh.proxy_api_url}",
    ]
    operator.start()
    stack = Stack(z2jh, operator, api)
    try:
        operator.register_webhook(api, "webhook-probe")
        for user in USERS:
            stack.spawn(user)
        yield stack
    except BaseException:
        print(stack.diagnostics())
        raise
    finally:
        for user in USERS:
            z2jh.api("DELETE", f"/users/{user}/server")
        operator.unregister_webhook(api)
        operator.stop()
        api.close()


def test_the_spawned_pod_is_injected_and_scheduled_on_the_node_agent(stack: Stack, node_agent: Any) -> None:
    pod = stack.core.read_namespaced_pod("jupyter-alice", stack.z2jh.namespace)
    assert pod.spec.node_name == node_agent.node_name
    assert "mcp-sidecar" in [c.name for c in pod.spec.init_containers or ()]
    assert pod.status.pod_ip and pod.status.phase == "Running"


async def test_an_mcp_client_reaches_the_users_endpoint_through_chp(stack: Stack) -> None:
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


def test_another_users_token_is_refused_and_no_token_is_401(stack: Stack) -> None:
    bob = stack.token_secret("bob")
    url = f"{stack.z2jh.public_url}/user/alice/mcp"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    foreign = httpx.post(url, json=body, headers={**headers, "Authorization": f"Bearer {bob['token']}"})
    assert foreign.status_code == 403, foreign.text
    anonymous = httpx.post(url, json=body, headers=headers)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
