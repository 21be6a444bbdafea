"""The proxy route of an injected pod (pure, no I/O): what configurable-http-proxy (CHP) should map
`<JUPYTERHUB_SERVICE_PREFIX>mcp` to, which of CHP's routes are ours, and what a pass repairs.

On Zero to JupyterHub's default topology traffic goes proxy-public -> CHP -> the user pod; CHP
routes by longest prefix, so `/user/alice/mcp` -> the sidecar wins over the hub's `/user/alice/`
-> the notebook. The hub leaves our routes alone: its `ConfigurableHTTPProxy.get_all_routes`
omits every CHP route without the key `jupyterhub` (the one it adds to its own), so `check_routes`
never sees, let alone deletes, a route of ours; and ours never carry `user`/`server_name`, the
data of the hub's user routes. What marks a route ours is `ROUTE_MARK` in its data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp_operator.children import sidecar_port
from mcp_operator.constants import ROUTE_MARK
from mcp_operator.podinfo import endpoint_path, pod_ip
from mcp_operator.policy import Policy

# The key JupyterHub puts on its own CHP routes; a route carrying it is the hub's, never ours.
HUB_ROUTE_KEY = "jupyterhub"


@dataclass(frozen=True)
class ProxyRoute:
    path: str  # CHP's routespec: /user/alice/mcp (with the hub's base URL in front when it has one)
    target: str  # http://<pod IP>:<sidecar port>
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return str(self.data.get("namespace") or "")


def build_proxy_route(pod: Mapping[str, Any], policy: Policy) -> ProxyRoute | None:
    """The CHP route the pod should have now; None when its policy routes otherwise or the pod
    has no IP (yet, or any more)."""
    ip = pod_ip(pod)
    if policy.route.mode != "proxy" or ip is None:
        return None
    meta = pod["metadata"]
    host = f"[{ip}]" if ":" in ip else ip
    return ProxyRoute(
        path=endpoint_path(pod),
        target=f"http://{host}:{sidecar_port(pod, policy)}",
        data={ROUTE_MARK: True, "namespace": meta["namespace"], "pod": meta["name"], "uid": meta["uid"]},
    )


def is_ours(data: Mapping[str, Any]) -> bool:
    """A CHP route's data (CHP returns it merged with `target` and `last_activity`) is ours."""
    return data.get(ROUTE_MARK) is True and HUB_ROUTE_KEY not in data


def route_in_place(route: ProxyRoute, table: Mapping[str, Mapping[str, Any]]) -> bool:
    actual = table.get(route.path)
    return (
        actual is not None
        and actual.get("target") == route.target
        and all(actual.get(k) == v for k, v in route.data.items())
    )


@dataclass
class RoutePlan:
    add: list[ProxyRoute] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # paths

    def __bool__(self) -> bool:
        return bool(self.add or self.delete)


def plan_routes(
    desired: Iterable[ProxyRoute], table: Mapping[str, Mapping[str, Any]], namespace: str
) -> RoutePlan:
    """Against CHP's route table (`GET /api/routes`): add what is missing or points elsewhere (a
    CHP restart loses them all: it keeps routes in memory), delete our routes of this namespace
    that no pod wants any more. A route that is not ours is never touched, even on our path."""
    plan = RoutePlan()
    wanted: set[str] = set()
    for route in desired:
        wanted.add(route.path)
        actual = table.get(route.path)
        if actual is not None and not is_ours(actual):
            continue  # someone else's route: leave it
        if not route_in_place(route, table):
            plan.add.append(route)
    for path, data in table.items():
        if path not in wanted and is_ours(data) and data.get("namespace") == namespace:
            plan.delete.append(path)
    return plan
