"""Scenario 4 of the Zero to JupyterHub tier: route modes ``ingress`` and ``gateway`` through a real
controller.

One Z2JH release with ``ingress.enabled`` (host, ``ingressClassName: traefik``, TLS) and
``httpRoute.enabled`` (a Gateway of class ``traefik``, an HTTPS listener), and Traefik
(tests/harness/traefik.py) reading both from the API server. The default MCPPolicy routes by
Ingress, lined up with Z2JH's own (same host, class and TLS Secret: what the chart's
``route.ingress`` values give the default policy); a second policy routes one user by HTTPRoute,
attached to Z2JH's Gateway. A real MCP client reaches each user's endpoint through Traefik over
TLS (the certificate is checked against the host) with the token from the user's Secret, at the
URL the Secret advertises, with ``hub.baseUrl: /jhub/`` (the gateway user's is a named server
whose user name has an `@`, as e-mail logins give, in the HTTPRoute's path); an idle event
stream stays open through Traefik.

What is simulated (see tests/harness/traefik.py): no DNS and no LoadBalancer; the client sends
each host to Traefik's loopback ports. Z2JH's own Ingress and HTTPRoute point at proxy-public,
whose only endpoint is the proxy pod kwok marks Running (CHP runs on the host, tests/harness/z2jh.py),
so only the MCP paths have a live backend here; the operator's Reachable check cannot resolve the
route's host from the host and is not asserted (scenario 1 covers it in proxy mode).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from mcp_operator.constants import MANAGED_BY

from tests.harness.gatewayapi import install_gateway_api
from tests.harness.mcp import call, idle_stream, mcp_client_over, text
from tests.harness.operator import create_policy
from tests.harness.paths import eventually
from tests.harness.traefik import (
    GATEWAY_CONTROLLER,
    INGRESS_CONTROLLER,
    Traefik,
    routed_http_client,
    running_traefik,
)
from tests.harness.z2jh_stack import McpStack, running_stack

pytestmark = [pytest.mark.z2jh, pytest.mark.controlplane, pytest.mark.hub]

INGRESS_HOST = "jupyter.test"
GATEWAY_HOST = "gateway.jupyter.test"
TLS_SECRET = "jupyter-tls"
GATEWAY = "jupyter-gateway"
CLASS = "traefik"
INGRESS_USER = "ivan"
GATEWAY_USER = "hana@example.org"  # an `@` in the HTTPRoute path, as e-mail logins give
GATEWAY_SERVER = "lab.1"  # a named server (with a dot) behind the gateway
BASE = "/jhub/"  # hub.baseUrl: every path carries it


def z2jh_values(traefik: Traefik) -> dict[str, Any]:
    return {
        "hub": {"baseUrl": BASE, "allowNamedServers": True},
        "ingress": {
            "enabled": True,
            "ingressClassName": CLASS,
            "hosts": [INGRESS_HOST],
            "tls": [{"hosts": [INGRESS_HOST], "secretName": TLS_SECRET}],
        },
        "httpRoute": {"enabled": True, "hostnames": [GATEWAY_HOST], "parentRefs": [{"name": GATEWAY}]},
    }


def gateway_api_objects(namespace: str, traefik: Traefik) -> tuple[dict[str, Any], dict[str, Any]]:
    """Traefik's GatewayClass and the Gateway Z2JH's httpRoute attaches to: one HTTPS listener on
    Traefik's TLS entry point (Traefik maps listeners to entry points by port)."""
    gateway_class = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": CLASS},
        "spec": {"controllerName": GATEWAY_CONTROLLER},
    }
    listener = {
        "name": "https",
        "port": traefik.websecure_port,
        "protocol": "HTTPS",
        "hostname": GATEWAY_HOST,
        "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": TLS_SECRET}]},
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    }
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": namespace},
        "spec": {"gatewayClassName": CLASS, "listeners": [listener]},
    }
    return gateway_class, gateway


def apply(controlplane: Any, obj: dict[str, Any]) -> None:
    controlplane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(obj))


@pytest.fixture(scope="module")
def traefik(controlplane: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traefik]:
    install_gateway_api(controlplane)
    ingress_class = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": CLASS},
        "spec": {"controller": INGRESS_CONTROLLER},
    }
    apply(controlplane, ingress_class)
    with running_traefik(controlplane.kubeconfig, tmp_path_factory.mktemp("traefik")) as traefik:
        yield traefik


@pytest.fixture(scope="module")
def stack(
    controlplane: Any,
    node_agent: Any,
    z2jh_factory: Any,
    traefik: Traefik,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[McpStack]:
    workdir = tmp_path_factory.mktemp("z2jh-operator")
    ingress_route = {
        "mode": "ingress",
        "host": INGRESS_HOST,
        "ingressClassName": CLASS,
        "tlsSecretName": TLS_SECRET,
    }
    policy = {"tokens": {"issue": True}, "route": ingress_route}
    with running_stack(
        controlplane, node_agent, z2jh_factory, workdir, values=z2jh_values(traefik), policy=policy
    ) as stack:
        cert, key = controlplane.sign_serving_cert([INGRESS_HOST, GATEWAY_HOST])
        tls = client.V1Secret(
            metadata=client.V1ObjectMeta(name=TLS_SECRET),
            type="kubernetes.io/tls",
            data={"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()},
        )
        stack.core.create_namespaced_secret(stack.namespace, tls)
        for obj in gateway_api_objects(stack.namespace, traefik):
            apply(controlplane, obj)
        gateway_route = {"mode": "gateway", "host": GATEWAY_HOST, "parentRefs": [{"name": GATEWAY}]}
        selection = {"users": [GATEWAY_USER], "priority": 10}
        create_policy(
            stack.api,
            stack.namespace,
            "by-gateway",
            {"selection": selection, "tokens": {"issue": True}, "route": gateway_route},
        )
        stack.spawn(INGRESS_USER)
        stack.spawn(GATEWAY_USER, GATEWAY_SERVER)
        yield stack


def ours_by_labels(labels: dict[str, str] | None) -> bool:
    return MANAGED_BY.items() <= (labels or {}).items()


def routes(traefik: Traefik) -> dict[tuple[str, int], int]:
    return {(INGRESS_HOST, 443): traefik.websecure_port, (GATEWAY_HOST, 443): traefik.websecure_port}


def test_the_ingress_lines_up_with_z2jhs_own(stack: McpStack) -> None:
    networking = client.NetworkingV1Api(stack.api)
    every = networking.list_namespaced_ingress(stack.namespace).items
    ours = [i for i in every if ours_by_labels(i.metadata.labels)]
    (z2jh,) = [i for i in every if not ours_by_labels(i.metadata.labels)]
    assert len(ours) == 1, [i.metadata.name for i in ours]
    (mine,) = ours
    assert mine.spec.ingress_class_name == z2jh.spec.ingress_class_name == CLASS
    assert mine.spec.rules[0].host == z2jh.spec.rules[0].host == INGRESS_HOST
    assert mine.spec.tls[0].secret_name == z2jh.spec.tls[0].secret_name == TLS_SECRET
    assert mine.spec.rules[0].http.paths[0].path == f"{BASE}user/{INGRESS_USER}/mcp"
    assert z2jh.spec.rules[0].http.paths[0].path == BASE


async def test_an_mcp_client_reaches_the_endpoint_through_traefiks_ingress(
    stack: McpStack, traefik: Traefik, controlplane: Any
) -> None:
    await reach_through_traefik(stack, traefik, controlplane, INGRESS_USER, INGRESS_HOST)


async def test_an_mcp_client_reaches_the_endpoint_through_traefiks_gateway(
    stack: McpStack, traefik: Traefik, controlplane: Any
) -> None:
    await reach_through_traefik(stack, traefik, controlplane, GATEWAY_USER, GATEWAY_HOST, GATEWAY_SERVER)


async def reach_through_traefik(
    stack: McpStack, traefik: Traefik, controlplane: Any, user: str, host: str, server: str = ""
) -> None:
    secret = stack.token_secret(user, server)
    url = f"https://{host}{BASE}user/{user}/" + (f"{server}/" if server else "") + "mcp"
    assert secret["url"] == url  # what the Secret advertises is where the endpoint answers
    headers = {"Authorization": f"Bearer {secret['token']}"}
    async with routed_http_client(routes(traefik), headers=headers, ca_pem=controlplane.ca_pem) as http:
        await eventually_routed(http, url, traefik)
        async with mcp_client_over(http, url) as mcp:
            await call(mcp, "create_notebook", path="routed.ipynb")
            code = "import os; print('routed user:', os.environ['JUPYTERHUB_USER'])"
            ran = await call(mcp, "insert_and_execute", path="routed.ipynb", source=code)
            assert f"routed user: {user}" in text(ran)


async def eventually_routed(http: Any, url: str, traefik: Traefik) -> None:
    """Traefik applies a new route a moment after the object is written, and sends to the pod only
    once its EndpointSlice is ready: until then 404 or 503. Routed means the sidecar itself answers
    (its 401 with a Bearer challenge to a request without a valid token)."""
    deadline = time.monotonic() + 90
    while True:
        answer = await http.get(url, headers={"Authorization": "Bearer not-a-token"})
        if answer.status_code == 401 and answer.headers.get("www-authenticate", "").startswith("Bearer"):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{url} answered {answer.status_code} from Traefik, not the sidecar, after 90 s:\n"
                + traefik.log_tail()
            )
        await asyncio.sleep(0.5)


def test_the_gateway_route_attaches_to_z2jhs_gateway(stack: McpStack) -> None:
    custom = client.CustomObjectsApi(stack.api)
    routes = custom.list_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", stack.namespace, "httproutes"
    )["items"]
    mine = [r for r in routes if ours_by_labels(r["metadata"].get("labels"))]
    (z2jh,) = [r for r in routes if not ours_by_labels(r["metadata"].get("labels"))]
    assert len(mine) == 1, [r["metadata"]["name"] for r in routes]
    (route,) = mine
    assert [p["name"] for p in route["spec"]["parentRefs"]] == [p["name"] for p in z2jh["spec"]["parentRefs"]]
    assert route["spec"]["hostnames"] == z2jh["spec"]["hostnames"] == [GATEWAY_HOST]

    def accepted() -> bool:
        current = custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", stack.namespace, "httproutes", route["metadata"]["name"]
        )
        parents = (current.get("status") or {}).get("parents") or []
        return any(
            c["type"] == "Accepted" and c["status"] == "True" for p in parents for c in p["conditions"]
        )

    eventually("Traefik accepted the operator's HTTPRoute", accepted, timeout=60, every=1)


async def test_an_idle_event_stream_stays_open_through_traefik(
    stack: McpStack, traefik: Traefik, controlplane: Any
) -> None:
    """Traefik's entry points keep a response stream open without a deadline (its 60 s
    readTimeout is for reading the request); the SDK's keep-alive comments come through."""
    secret = stack.token_secret(INGRESS_USER)
    url = f"https://{INGRESS_HOST}{BASE}user/{INGRESS_USER}/mcp"
    headers = {"Authorization": f"Bearer {secret['token']}"}
    async with routed_http_client(routes(traefik), headers=headers, ca_pem=controlplane.ca_pem) as http:
        await eventually_routed(http, url, traefik)
        stream = await idle_stream(http, url, seconds=20)
    assert stream.closed_after is None, f"Traefik closed the idle stream after {stream.closed_after:.1f} s"
    assert stream.pings, "no keep-alive comment reached the client through Traefik in 20 s"
