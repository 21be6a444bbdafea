"""This project on a real Zero to JupyterHub (the z2jh tier): ``running_stack`` / ``McpStack``.

``running_stack`` installs a Z2JH release (tests/harness/z2jh.py) with the values a Z2JH admin adds
for this project (the hub service ``jupyterhub-mcp`` with the ``tokens`` scope, the chart making its
token; the MCP custom scopes and the user role granting them, ``endpoint.z2jh_hub_values``) plus
what the node agent needs (no iptables init container, no PVC), merged with the caller's; installs
the real CRD and an MCPPolicy; starts the real operator (``OperatorProcess``) as this chart's
ServiceAccount (the chart's own ServiceAccount, Role and RoleBinding applied into the release
namespace; a TokenRequest token) with the hub service's token and ``--hub-api-url`` /
``--hub-public-url`` / ``--proxy-api-url`` at the hub's and CHP's host addresses (there is no
cluster DNS for it on the host); and registers the webhook (failurePolicy ``Ignore``, the chart's
default). On the way out it stops every server it spawned, unregisters the webhook and stops the
operator (the release itself is the ``z2jh_factory``'s).

``McpStack`` is what a scenario drives: ``spawn`` / ``stop_server`` through the hub API,
``token_secret`` (the operator's Secret, once it holds a token), ``chp_routes`` (CHP's routing
table through its REST API), ``policy_status``, ``pod_name`` / ``user_pod`` / ``secret_name``
(KubeSpawner's pod and the operator's Secret for a user's server) and ``diagnostics`` (hub,
proxy, operator and node agent logs, for failure messages).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from mcp_operator import endpoint
from mcp_operator.constants import GROUP, PLURAL, VERSION
from mcp_operator.names import safe_slug, token_secret_name

from tests.harness.chart import install_chart_rbac, service_account_kubeconfig
from tests.harness.operator import OperatorProcess, create_policy, install_crd
from tests.harness.paths import eventually
from tests.harness.z2jh import Z2JH, deep_merge

SERVICE = "jupyterhub-mcp"
SPAWN_TIMEOUT = 180.0  # a cold singleuser start next to a busy control plane on two cores
SECRET_TIMEOUT = 90.0


def stack_values(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Z2JH values of the tier: this project's hub service and role, and what the node agent
    needs; ``extra`` merged on top."""
    base: dict[str, Any] = {
        "hub": {
            # The hub service the README tells a Z2JH admin to add; the chart makes its token.
            "services": {SERVICE: {}},
            "loadRoles": {SERVICE: {"scopes": ["tokens"], "services": [SERVICE]}},
        },
        # Its init container runs iptables, which the node agent maps to nothing; and the agent
        # mounts no PersistentVolumeClaims.
        "singleuser": {"cloudMetadata": {"blockWithIptables": False}, "storage": {"type": "none"}},
    }
    # The MCP custom scopes and the user role granting them, as the README tells the admin.
    return deep_merge(deep_merge(base, endpoint.z2jh_hub_values()), extra or {})


class McpStack:
    def __init__(self, z2jh: Z2JH, operator: OperatorProcess, api: Any, node_agent: Any) -> None:
        self.z2jh, self.operator, self.api, self.node_agent = z2jh, operator, api, node_agent
        self.core = client.CoreV1Api(api)
        self.spawned: set[tuple[str, str]] = set()

    @property
    def namespace(self) -> str:
        return self.z2jh.namespace

    @staticmethod
    def pod_name(user: str) -> str:
        """KubeSpawner 7's default pod name for a default server (``jupyter-{user}``, a safe slug);
        a named server's has a hash (see ``user_pod``)."""
        return f"jupyter-{safe_slug(user)}"

    def user_pod(self, user: str, server: str = "") -> Any:
        """The live pod KubeSpawner made for a server, found by its annotations (KubeSpawner 7 names
        a named server's pod with a hash: ``jupyter-{user}--{server}---{hash}``), or None."""
        selector = "component=singleuser-server"
        for pod in self.core.list_namespaced_pod(self.namespace, label_selector=selector).items:
            annotations = pod.metadata.annotations or {}
            names = (
                annotations.get("hub.jupyter.org/username"),
                annotations.get("hub.jupyter.org/servername", ""),
            )
            if names == (user, server) and not pod.metadata.deletion_timestamp:
                return pod
        return None

    @staticmethod
    def secret_name(user: str, server: str = "") -> str:
        return token_secret_name(user, server)

    def diagnostics(self) -> str:
        parts = [self.z2jh.logs(), "--- operator ---", self.operator.text()[-6000:]]
        with contextlib.suppress(Exception):
            for pod in self.core.list_namespaced_pod(
                self.namespace, label_selector="component=singleuser-server"
            ).items:
                name = pod.metadata.name
                parts.append(f"--- node agent: {name} ({pod.status.phase}) ---")
                parts.append(self.node_agent.logs(self.namespace, name))
        return "\n".join(parts)

    def server(self, user: str, server: str = "") -> dict[str, Any] | None:
        reply = self.z2jh.api("GET", f"/users/{user}")
        if reply.status_code == 404:
            return None
        return (reply.json().get("servers") or {}).get(server)

    def spawn(
        self,
        user: str,
        server: str = "",
        *,
        options: Mapping[str, Any] | None = None,
        timeout: float = SPAWN_TIMEOUT,
    ) -> None:
        """Create the user if need be, start the server through the hub API and wait until the hub
        says it is ready."""
        self.z2jh.api("POST", f"/users/{user}")  # 201, or 409 when the user exists
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        started = self.z2jh.api("POST", path, json=dict(options or {}))
        assert started.status_code in (201, 202), started.text
        self.spawned.add((user, server))
        eventually(
            f"{user}'s server {server!r} to be ready",
            lambda: (self.server(user, server) or {}).get("ready"),
            timeout=timeout,
            every=1,
        )

    def stop_server(self, user: str, server: str = "", *, wait: bool = True) -> None:
        """Stop the server through the hub API; with ``wait``, until the hub no longer lists it."""
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        stopped = self.z2jh.api("DELETE", path)
        assert stopped.status_code in (202, 204), stopped.text
        self.spawned.discard((user, server))
        if wait:
            eventually(
                f"{user}'s server {server!r} to stop",
                lambda: self.server(user, server) is None,
                timeout=90,
                every=1,
            )

    def read_secret(self, user: str, server: str = "") -> dict[str, str] | None:
        """The Secret's data decoded, None when there is no such Secret."""
        try:
            secret = self.core.read_namespaced_secret(self.secret_name(user, server), self.namespace)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def token_secret(self, user: str, server: str = "", timeout: float = SECRET_TIMEOUT) -> dict[str, str]:
        def filled() -> dict[str, str] | None:
            data = self.read_secret(user, server)
            return data if data and data.get("token") else None

        return eventually(f"{user}'s MCP token Secret", filled, timeout=timeout, every=1)

    def chp_routes(self) -> dict[str, dict[str, Any]]:
        """CHP's routing table as its REST API returns it (routespec -> data with ``target``)."""
        reply = httpx.get(
            f"{self.z2jh.proxy_api_url}/api/routes",
            headers={"Authorization": f"token {self.z2jh.proxy_token}"},
            timeout=10,
        )
        reply.raise_for_status()
        return reply.json()

    def policy_status(self, name: str = "default") -> dict[str, Any]:
        policy = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return policy.get("status") or {}


@contextlib.contextmanager
def running_stack(
    controlplane: Any,
    node_agent: Any,
    z2jh_factory: Callable[..., Z2JH],
    workdir: Path,
    *,
    values: Mapping[str, Any] | None = None,
    policy: Mapping[str, Any] | None = None,
    reconcile_interval: float = 5,
    operator_env: Mapping[str, str] | None = None,
) -> Iterator[McpStack]:
    """A Z2JH release with ``stack_values(values)``, the CRD, the MCPPolicy ``default`` (``policy``,
    default: tokens issued), the operator and its webhook. Diagnostics are printed when the setup
    or the caller's block fails."""
    z2jh = z2jh_factory(values=stack_values(values), host_ip=node_agent.host_ip)
    api = controlplane.api_client()
    install_crd(controlplane)
    create_policy(api, z2jh.namespace, "default", dict(policy or {"tokens": {"issue": True}}))
    operator = OperatorProcess(controlplane, z2jh.namespace, workdir, native_sidecar="true")
    # As this chart's ServiceAccount, with exactly the chart's Role: a call the chart does not
    # allow fails here as it would in the cluster.
    account = install_chart_rbac(controlplane, z2jh.namespace)
    operator.env["KUBECONFIG"] = str(
        service_account_kubeconfig(controlplane, z2jh.namespace, account, workdir / "operator.kubeconfig")
    )
    operator.env["JUPYTERHUB_API_TOKEN"] = z2jh.secret(f"hub.services.{SERVICE}.apiToken")
    operator.env["MCP_RECONCILE_INTERVAL"] = str(reconcile_interval)
    operator.env.update(operator_env or {})
    operator.args += [
        f"--hub-api-url={z2jh.hub_api_url}",
        f"--hub-public-url={z2jh.public_url}",
        f"--proxy-api-url={z2jh.proxy_api_url}",
        f"--proxy-public-url={z2jh.public_url}",  # where the Reachable check asks
        "--check-reachable",
    ]
    stack = McpStack(z2jh, operator, api, node_agent)
    try:
        operator.start()
        operator.register_webhook(api, "webhook-probe")
        yield stack
    except BaseException:
        print(stack.diagnostics())
        raise
    finally:
        for user, server in sorted(stack.spawned):
            with contextlib.suppress(Exception):
                stack.stop_server(user, server, wait=False)
        with contextlib.suppress(client.ApiException):
            operator.unregister_webhook(api)
        operator.stop()
        api.close()
