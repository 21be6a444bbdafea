"""Scenario 6 of the Zero to JupyterHub tier: upgrades with user servers running lose nothing.

On the stack of tests/harness/z2jh_stack.py, with frank's server running and an agent's work in it
(a notebook, a kernel holding a variable):

- **Z2JH upgraded** (`helm upgrade` of the real chart with a changed hub value): the harness
  restarts the hub and CHP as their Deployments' rollouts would (`Z2JH.upgrade`: the hub because
  its pod template changed, CHP on the first upgrade, its routing table empty after). frank's
  pod is the same pod, our CHP route is back within a reconcile interval, the token in his
  Secret is the same one and still admitted (none re-minted), and his kernel still holds its
  variable.
- **This chart upgraded**: the operator's Deployment is `Recreate`, so an upgrade stops the
  operator and starts the new one with the new values. Here the operator is a host process
  (tests/harness/z2jh_stack.py), so that is what is done to it: stopped, started with a changed
  option. The new operator takes over what is there: same token (its id annotation unchanged), the
  route in place, no second set of children, and the agent's session of before still works.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mcp_operator.constants import ANN_TOKEN_ID

from tests.harness.mcp import call, mcp_client, text
from tests.harness.paths import eventually
from tests.harness.z2jh_stack import McpStack, running_stack

pytestmark = [pytest.mark.z2jh, pytest.mark.controlplane, pytest.mark.hub]

USER = "frank"
RECONCILE_INTERVAL = 3.0
SLACK = 15.0  # a loaded two-core machine: a restarted hub, a CHP API call, the pass itself
NOTEBOOK = "kept.ipynb"


@pytest.fixture(scope="module")
def stack(
    controlplane: Any, node_agent: Any, z2jh_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[McpStack]:
    workdir = tmp_path_factory.mktemp("z2jh-operator")
    with running_stack(
        controlplane, node_agent, z2jh_factory, workdir, reconcile_interval=RECONCILE_INTERVAL
    ) as stack:
        stack.spawn(USER)
        yield stack


def endpoint(stack: McpStack) -> str:
    return f"{stack.z2jh.public_url}/user/{USER}/mcp"


def token_id(stack: McpStack) -> str:
    secret = stack.core.read_namespaced_secret(stack.secret_name(USER), stack.namespace)
    return secret.metadata.annotations[ANN_TOKEN_ID]


async def kernel_still_holds(stack: McpStack, token: str, expected: str) -> None:
    async with mcp_client(endpoint(stack), token) as mcp:
        ran = await call(mcp, "insert_and_execute", path=NOTEBOOK, source="print('answer', answer)")
        assert f"answer {expected}" in text(ran), text(ran)


async def test_upgrading_z2jh_then_this_chart_loses_nothing(stack: McpStack) -> None:
    secret = stack.token_secret(USER)
    token, minted = secret["token"], token_id(stack)
    pod_uid = stack.user_pod(USER).metadata.uid
    async with mcp_client(endpoint(stack), token) as mcp:
        await call(mcp, "create_notebook", path=NOTEBOOK)
        await call(mcp, "insert_and_execute", path=NOTEBOOK, source="answer = 41 + 1")
    route = eventually("frank's CHP route", lambda: stack.chp_routes().get(f"/user/{USER}/mcp"), timeout=30)

    # 1. Z2JH: a changed hub value; the hub and CHP restart as their rollouts would.
    hub, proxy = stack.z2jh.hub, stack.z2jh.proxy
    stack.z2jh.upgrade({"hub": {"extraEnv": {"UPGRADED_BY_TEST": "1"}}})
    assert stack.z2jh.hub is not hub and stack.z2jh.proxy is not proxy, "the upgrade restarted nothing"
    back = eventually(
        "our route back in the restarted CHP",
        lambda: stack.chp_routes().get(f"/user/{USER}/mcp"),
        timeout=RECONCILE_INTERVAL + SLACK,
        every=0.5,
    )
    assert back["target"] == route["target"]
    eventually(
        "the restarted hub to list frank's server as ready",
        lambda: (stack.server(USER) or {}).get("ready"),
        timeout=60,
        every=1,
    )
    assert stack.user_pod(USER).metadata.uid == pod_uid, "the upgrade replaced frank's pod"
    assert stack.token_secret(USER)["token"] == token and token_id(stack) == minted
    await kernel_still_holds(stack, token, "42")

    # 2. This chart: Recreate stops the operator, the new one starts with the new values.
    stack.operator.stop()
    stack.operator.env["MCP_RECONCILE_INTERVAL"] = str(RECONCILE_INTERVAL * 2)  # a changed value
    stack.operator.start()
    eventually(
        "a reconcile pass of the new operator",
        lambda: (
            "mcp_operator_reconcile_passes_total" in stack.operator.metrics()
            and any(
                line.startswith('mcp_operator_reconcile_passes_total{outcome="ok"}')
                and not line.endswith(" 0.0")
                for line in stack.operator.metrics().splitlines()
            )
        ),
        timeout=2 * RECONCILE_INTERVAL * 2 + SLACK,
    )
    assert stack.token_secret(USER)["token"] == token and token_id(stack) == minted, "a token was re-minted"
    assert stack.chp_routes()[f"/user/{USER}/mcp"]["target"] == route["target"]
    services = stack.core.list_namespaced_service(
        stack.namespace, label_selector="app.kubernetes.io/managed-by=jupyterhub-mcp"
    ).items
    assert len(services) == 1, [s.metadata.name for s in services]
    assert stack.user_pod(USER).metadata.uid == pod_uid
    await kernel_still_holds(stack, token, "42")
