"""Scenario 3 of the Zero to JupyterHub tier: ``hub.baseUrl: /jhub/``.

On the stack of tests/harness/z2jh_stack.py with Z2JH's ``hub.baseUrl: /jhub/``: the hub serves
under ``/jhub/hub/``, KubeSpawner gives the pod ``JUPYTERHUB_SERVICE_PREFIX=/jhub/user/<name>/``
and ``JUPYTERHUB_API_URL=http://hub:<port>/jhub/hub/api``. The operator is told the hub's API
with the base path (``--hub-api-url``: on the host ``hub`` does not resolve) and the public URL
with it (``--hub-public-url`` = proxy-public + ``/jhub``: the operator must keep that path and not
double it with the prefix's). Everything carries the base path exactly once: the CHP route
``/jhub/user/<name>/mcp``, the Secret's URL, the hub API the token was minted at (recorded on the
Secret for revocation), and a real MCP client reaches the endpoint there with the Secret's token;
a stop revokes the token there and removes the route.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp_operator.constants import ANN_HUB_API

from tests.harness.mcp import call, mcp_client, text
from tests.harness.paths import eventually
from tests.harness.z2jh_stack import McpStack, running_stack

pytestmark = [pytest.mark.z2jh, pytest.mark.controlplane, pytest.mark.hub]

USER = "gina"
BASE = "/jhub/"


@pytest.fixture(scope="module")
def stack(
    controlplane: Any, node_agent: Any, z2jh_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[McpStack]:
    workdir = tmp_path_factory.mktemp("z2jh-operator")
    with running_stack(
        controlplane, node_agent, z2jh_factory, workdir, values={"hub": {"baseUrl": BASE}}
    ) as stack:
        assert stack.z2jh.base_url == BASE
        stack.spawn(USER)
        yield stack


def notebook_env(stack: McpStack) -> dict[str, str]:
    pod = stack.user_pod(USER)
    notebook = next(c for c in pod.spec.containers if c.name == "notebook")
    return {e.name: e.value for e in notebook.env or () if e.value is not None}


def test_kubespawner_gives_the_pod_the_base_path(stack: McpStack) -> None:
    env = notebook_env(stack)
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == f"{BASE}user/{USER}/"
    assert env["JUPYTERHUB_API_URL"].endswith(f"{BASE}hub/api"), env["JUPYTERHUB_API_URL"]


def test_the_route_the_secret_and_the_minting_carry_the_base_path_once(stack: McpStack) -> None:
    secret = stack.token_secret(USER)
    host = stack.z2jh.public_url.removesuffix(BASE.rstrip("/"))
    assert secret["url"] == f"{host}{BASE}user/{USER}/mcp", secret["url"]
    route = eventually(
        "the CHP route under the base path",
        lambda: stack.chp_routes().get(f"{BASE}user/{USER}/mcp"),
        timeout=30,
    )
    assert route["target"].startswith(f"http://{stack.user_pod(USER).status.pod_ip}:"), route
    assert f"/user/{USER}/mcp" not in stack.chp_routes()  # nothing routed outside the base path
    annotations = stack.core.read_namespaced_secret(
        stack.secret_name(USER), stack.namespace
    ).metadata.annotations
    minted_at = annotations[ANN_HUB_API]  # the operator keeps its API URLs with a trailing slash
    assert minted_at.rstrip("/") == stack.z2jh.hub_api_url and minted_at.count(BASE) == 1, minted_at
    me = stack.z2jh.api("GET", "/user", token=secret["token"])  # the hub at its base path knows the token
    assert me.status_code == 200 and me.json()["name"] == USER, me.text


async def test_an_mcp_client_reaches_the_endpoint_under_the_base_path(stack: McpStack) -> None:
    secret = stack.token_secret(USER)
    anonymous = httpx.post(
        secret["url"],
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
        timeout=30,
    )
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    async with mcp_client(secret["url"], secret["token"]) as mcp:
        await call(mcp, "create_notebook", path="base.ipynb")
        code = "import os; print('prefix:', os.environ['JUPYTERHUB_SERVICE_PREFIX'])"
        ran = await call(mcp, "insert_and_execute", path="base.ipynb", source=code)
        assert f"prefix: {BASE}user/{USER}/" in text(ran)


def test_a_stop_revokes_the_token_at_the_base_path_and_removes_the_route(stack: McpStack) -> None:
    """Revocation goes to the hub API recorded on the Secret (with the base path)."""
    secret = stack.token_secret(USER)
    stack.stop_server(USER)
    eventually(
        "gina's token to be revoked at /jhub/hub/api",
        lambda: stack.z2jh.api("GET", "/user", token=secret["token"]).status_code == 403,
        timeout=60,
        every=1,
    )
    eventually("gina's route to go", lambda: f"{BASE}user/{USER}/mcp" not in stack.chp_routes(), timeout=30)
    eventually("gina's Secret to be released and gone", lambda: stack.read_secret(USER) is None, timeout=60)
