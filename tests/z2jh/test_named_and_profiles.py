"""Scenario 2 of the Zero to JupyterHub tier: named servers and a ``profileList`` profile.

On the stack of tests/harness/z2jh_stack.py with Z2JH's ``hub.allowNamedServers: true`` and a
``singleuser.profileList`` of two profiles: the default one, and ``custom``, whose
``kubespawner_override`` sets another image and ``extra_labels``. One user runs two servers at
once through the hub API: the default server (default profile) and the named server ``lab.v2``
(a dot in the name: KubeSpawner 7 names its pod ``jupyter-frank--lab-v2---<hash>``, the operator
its Secret ``mcp-token-frank--lab-2ev2``) with the ``custom`` profile. The node agent maps the
notebook container to ``jupyterhub-singleuser`` by its command, so the overridden image (never
pulled: no image is) still runs.

Both are injected, and a real MCP client reaches each at ``/user/frank/[lab.v2/]mcp`` through CHP
with its own Secret's token; a cell's output names the server it ran in; one server's token is
refused at the other server's endpoint (403: the token is scoped to its server).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.harness.mcp import call, mcp_client, text
from tests.harness.paths import eventually
from tests.harness.z2jh_stack import McpStack, running_stack

pytestmark = [pytest.mark.z2jh, pytest.mark.controlplane, pytest.mark.hub]

USER = "frank"
NAMED = "lab.v2"
CUSTOM_IMAGE = "registry.example.org/custom/datascience-notebook:v2"
CUSTOM_LABELS = {"team": "data-science", "example.org/profile": "custom"}
VALUES = {
    "hub": {"allowNamedServers": True},
    "singleuser": {
        "profileList": [
            {"display_name": "Default", "slug": "default", "default": True},
            {
                "display_name": "Custom image",
                "slug": "custom",
                "kubespawner_override": {"image": CUSTOM_IMAGE, "extra_labels": CUSTOM_LABELS},
            },
        ]
    },
}


@pytest.fixture(scope="module")
def stack(
    controlplane: Any, node_agent: Any, z2jh_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[McpStack]:
    workdir = tmp_path_factory.mktemp("z2jh-operator")
    with running_stack(controlplane, node_agent, z2jh_factory, workdir, values=VALUES) as stack:
        stack.spawn(USER)
        stack.spawn(USER, NAMED, options={"profile": "custom"})
        yield stack


def endpoint(stack: McpStack, server: str) -> str:
    return f"{stack.z2jh.public_url}/user/{USER}/" + (f"{server}/" if server else "") + "mcp"


def test_the_named_server_with_the_custom_profile_is_injected(stack: McpStack, node_agent: Any) -> None:
    pod = stack.user_pod(USER, NAMED)
    assert pod is not None, "no pod for frank's named server"
    assert pod.metadata.name.startswith(f"jupyter-{USER}--lab-v2---"), pod.metadata.name
    notebook = next(c for c in pod.spec.containers if c.name == "notebook")
    assert notebook.image == CUSTOM_IMAGE  # the profile's override reached KubeSpawner's pod
    assert CUSTOM_LABELS.items() <= (pod.metadata.labels or {}).items(), pod.metadata.labels
    assert "mcp-sidecar" in [c.name for c in pod.spec.init_containers or ()]
    assert pod.metadata.annotations.get("mcp.jupyterhub.org/injected", "").startswith("default/")
    assert pod.spec.node_name == node_agent.node_name and pod.status.phase == "Running"
    default = stack.user_pod(USER)
    assert default is not None and default.metadata.name == stack.pod_name(USER)
    assert next(c for c in default.spec.containers if c.name == "notebook").image != CUSTOM_IMAGE
    assert "team" not in (default.metadata.labels or {})


@pytest.mark.parametrize("server", ["", NAMED], ids=["default-server", "named-server"])
async def test_an_mcp_client_reaches_each_server_through_chp(stack: McpStack, server: str) -> None:
    secret = stack.token_secret(USER, server)
    assert stack.secret_name(USER, server) == ("mcp-token-frank--lab-2ev2" if server else "mcp-token-frank")
    assert secret["url"] == endpoint(stack, server)
    route = f"/user/{USER}/" + (f"{server}/" if server else "") + "mcp"
    ip = stack.user_pod(USER, server).status.pod_ip
    chp = eventually(f"the CHP route {route}", lambda: stack.chp_routes().get(route), timeout=30)
    assert chp["target"].startswith(f"http://{ip}:"), chp
    async with mcp_client(secret["url"], secret["token"]) as mcp:
        await call(mcp, "create_notebook", path="named.ipynb")
        code = "import os; print('server:', repr(os.environ['JUPYTERHUB_SERVER_NAME']))"
        ran = await call(mcp, "insert_and_execute", path="named.ipynb", source=code)
        assert f"server: {server!r}" in text(ran)


def test_one_servers_token_is_refused_at_the_other_servers_endpoint(stack: McpStack) -> None:
    default, named = stack.token_secret(USER), stack.token_secret(USER, NAMED)
    assert default["token"] != named["token"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for token, url in ((default["token"], endpoint(stack, NAMED)), (named["token"], endpoint(stack, ""))):
        headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}"}
        reply = httpx.post(url, json=body, headers=headers, timeout=30)
        assert reply.status_code == 403, (url, reply.status_code, reply.text)
