"""The level-triggered pass: every `--reconcile-interval` seconds, make the world match the spec
whatever events were missed.

`plan_repairs` (pure) compares what a namespace holds (injected pods, our children, our token
Secrets) with what the policies want and says what to repair:
- a pod whose children are missing or drifted (or whose wiring gave up after API errors): wire it
  again;
- a child whose pod is gone, or whose pod's policy was deleted or no longer selects it: delete it;
- a Running pod whose policy issues tokens but that has no token Secret (deleted by hand): issue;
- route mode proxy, given configurable-http-proxy's route table: a pod's route that is missing (a
  CHP restart loses every route: it keeps them in memory) or points elsewhere: add it; a route of
  ours (by its data) whose pod is gone or no longer routed through the proxy: delete it. Routes
  that are not ours (the hub's) are never touched.
`PeriodicReconcile` lists (CHP's routes and children first, then pods: a route or child seen always
belongs to a pod that existed before the pod list, so a pod spawning during the pass never loses
its fresh ones), plans, and carries the repairs out. When nothing drifted it makes no write, to
the API server or to the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_operator.children import build_children, injected_policy
from mcp_operator.chp import ProxyRouter
from mcp_operator.constants import ANN_TOKEN_ID
from mcp_operator.kube import CHILD_KINDS, ChildKind, Kube
from mcp_operator.metrics import LAST_PASS, RECONCILE_PASSES, RECONCILE_REPAIRS
from mcp_operator.names import child_name
from mcp_operator.policy import PodIdentity, Policy, matches
from mcp_operator.routes import ProxyRoute, RoutePlan, build_proxy_route, plan_routes, route_in_place
from mcp_operator.token_workers import TokenWorkers, is_running
from mcp_operator.wiring import ChildWiring

log = logging.getLogger(__name__)

REWIRE_CONCURRENCY = 32  # pods at once: twice the API threads, so the pool never idles


def contains(actual: Any, desired: Any) -> bool:
    """Whether `actual` (as the API server returns it, with its defaults added) holds everything
    `desired` says: maps may have more keys, lists must match item by item."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(
            k in actual and contains(actual[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return bool(actual == desired)


@dataclass
class Repairs:
    rewire: list[tuple[dict[str, Any], Policy]] = field(default_factory=list)
    delete: list[tuple[ChildKind, str, str]] = field(default_factory=list)  # (kind, namespace, name)
    reissue: list[dict[str, Any]] = field(default_factory=list)
    intact: list[tuple[str, tuple[str, int]]] = field(default_factory=list)  # (pod uid, (policy, generation))
    routes: RoutePlan = field(default_factory=RoutePlan)
    routes_intact: list[ProxyRoute] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rewire or self.delete or self.reissue or self.routes)


def _owner_uid(obj: Mapping[str, Any]) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or ()
    return next((r.get("uid") for r in refs if r.get("kind") == "Pod"), None)


def plan_repairs(
    pods: Iterable[Mapping[str, Any]],
    children: Iterable[Mapping[str, Any]],
    secrets: Iterable[Mapping[str, Any]],
    policies: Sequence[Policy],
    ingress_selector: Mapping[str, Any],
    *,
    proxy_routes: Mapping[str, Mapping[str, Any]] | None = None,
    namespace: str = "",
    extra_peers: Sequence[Mapping[str, Any]] = (),
) -> Repairs:
    """`proxy_routes`: CHP's table (`GET /api/routes`), None when it was not read (no route is
    then added or deleted); `namespace`: whose routes of ours this pass may delete."""
    repairs = Repairs()
    desired_routes: list[ProxyRoute] = []
    by_name = {p.name: p for p in policies}
    actual: dict[tuple[ChildKind, str], Mapping[str, Any]] = {}
    for child in children:
        actual[(child["kind"], child["metadata"]["name"])] = child
    # A Secret being deleted (its finalizer revokes the token) holds no token any more.
    owners_with_token = {
        _owner_uid(s)
        for s in secrets
        if (s["metadata"].get("annotations") or {}).get(ANN_TOKEN_ID)
        and not s["metadata"].get("deletionTimestamp")
    }
    kept: set[tuple[ChildKind, str]] = set()
    for pod in pods:
        meta = pod["metadata"]
        marker = injected_policy(pod)
        if marker is None or meta.get("deletionTimestamp") or PodIdentity.of(pod) is None:
            continue
        name = child_name(pod)
        mine = {kind: actual.get((kind, name)) for kind in CHILD_KINDS}
        mine = {k: c for k, c in mine.items() if c is not None and _owner_uid(c) == meta["uid"]}
        policy = by_name.get(marker[0])
        if policy is None or not matches(policy, pod):
            continue  # its children are not kept: deleted below
        kept.update((kind, name) for kind in mine)
        desired = build_children(pod, policy, ingress_selector, extra_peers)
        # Listed objects carry no apiVersion/kind: compare what we set, metadata and spec.
        drifted = any(
            not contains(mine.get(c["kind"]), {k: c[k] for k in ("metadata", "spec")}) for c in desired
        )
        unwanted = set(mine) - {c["kind"] for c in desired}
        if drifted or unwanted:
            repairs.rewire.append((dict(pod), policy))
        else:
            repairs.intact.append((meta["uid"], (policy.name, policy.generation)))
        if policy.tokens.issue and is_running(pod) and meta["uid"] not in owners_with_token:
            repairs.reissue.append(dict(pod))
        route = build_proxy_route(pod, policy)
        if route is not None:
            desired_routes.append(route)
    if proxy_routes is not None:
        repairs.routes = plan_routes(desired_routes, proxy_routes, namespace)
        repairs.routes_intact = [r for r in desired_routes if route_in_place(r, proxy_routes)]
    for (kind, name), child in actual.items():
        if (kind, name) not in kept and kind in CHILD_KINDS:
            repairs.delete.append((kind, child["metadata"]["namespace"], name))
    return repairs


@dataclass
class PassReport:
    pods: int = 0
    rewired: int = 0
    deleted: int = 0
    reissued: int = 0
    routes_added: int = 0
    routes_deleted: int = 0
    seconds: float = 0.0
    writes: int = 0


class PeriodicReconcile:
    def __init__(
        self,
        kube: Kube,
        wiring: ChildWiring,
        tokens: TokenWorkers | None,
        namespaces: Sequence[str],
        *,
        interval: float,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        router: ProxyRouter | None = None,
    ) -> None:
        self.router = router
        self.kube = kube
        self.wiring = wiring
        self.tokens = tokens
        self.namespaces = tuple(namespaces)
        self.interval = interval
        self.sleep = sleep
        self._listed_at = 0.0

    async def run_once(self) -> PassReport:
        report = PassReport()
        started, writes_before = time.monotonic(), self._writes()
        self._listed_at = started
        for namespace in self.namespaces:
            policies = self.wiring.index.policies(namespace)
            table = await self._proxy_table(namespace, policies)
            listed = await asyncio.gather(*(self.kube.list_children(namespace, kind) for kind in CHILD_KINDS))
            children = [c for kind_list in listed for c in kind_list]
            pods = await self.kube.list_user_pods(namespace)
            secrets = await self.kube.list_token_secrets(namespace) if self.tokens is not None else []
            repairs = plan_repairs(
                pods,
                children,
                secrets,
                policies,
                self.wiring.ingress_selector,
                proxy_routes=table,
                namespace=namespace,
                extra_peers=self.wiring.extra_peers,
            )
            report.pods += len(pods)
            await self._carry_out(repairs, report)
            await self._carry_out_routes(namespace, repairs, table or {}, report)
        report.seconds = time.monotonic() - started
        report.writes = self._writes() - writes_before
        return report

    def _writes(self) -> int:
        return self.kube.writes() + (self.router.writes() if self.router is not None else 0)

    async def _proxy_table(
        self, namespace: str, policies: Sequence[Policy]
    ) -> dict[str, dict[str, Any]] | None:
        """CHP's routes, read when this namespace routes through the proxy (or did: routes of ours
        may be left to delete); None otherwise or when CHP cannot be asked."""
        if self.router is None:
            return None
        routing = any(p.route.mode == "proxy" for p in policies)
        if not routing and not any(r.namespace == namespace for r in self.router.routed.values()):
            return None
        return await self.router.table(namespace)

    async def _carry_out_routes(
        self, namespace: str, repairs: Repairs, table: Mapping[str, Mapping[str, Any]], report: PassReport
    ) -> None:
        if self.router is None:
            return
        router = self.router
        for route in repairs.routes_intact:
            router.known(route)
        added = await asyncio.gather(*(router.add(route) for route in repairs.routes.add))
        deleted = await asyncio.gather(
            *(router.delete(namespace, path, table) for path in repairs.routes.delete)
        )
        report.routes_added += sum(added)
        report.routes_deleted += sum(deleted)
        for action, count in (("route-added", sum(added)), ("route-deleted", sum(deleted))):
            if count:
                RECONCILE_REPAIRS.labels(action=action).inc(count)
        if repairs.routes:
            log.info(
                "reconcile pass: %d proxy routes added, %d deleted in %s", sum(added), sum(deleted), namespace
            )

    async def _carry_out(self, repairs: Repairs, report: PassReport) -> None:
        for uid, key in repairs.intact:
            self.wiring.wired.setdefault(uid, key)
        # Pods wired since the listing (by their own events, in a start-up burst) have not drifted;
        # the rest are rewired a bounded number at a time.
        gate = asyncio.Semaphore(REWIRE_CONCURRENCY)

        async def rewire(pod: dict[str, Any], policy: Policy) -> bool:
            if self.wiring.wired_at.get(pod["metadata"]["uid"], -1.0) >= self._listed_at:
                return False
            async with gate:
                return await self.wiring.wire_pod(pod, policy=policy, again=True)

        results = await asyncio.gather(*(rewire(pod, policy) for pod, policy in repairs.rewire))
        report.rewired = sum(results)
        await asyncio.gather(*(self.kube.delete_child(kind, ns, name) for kind, ns, name in repairs.delete))
        report.deleted = len(repairs.delete)
        if self.tokens is not None:
            for pod in repairs.reissue:
                if not self.tokens.issuing(pod["metadata"]["uid"]):
                    self.tokens.schedule_issue(pod, again=True)
                    report.reissued += 1
        for action, count in (
            ("child-applied", report.rewired),
            ("child-deleted", report.deleted),
            ("token-reissued", report.reissued),
        ):
            if count:
                RECONCILE_REPAIRS.labels(action=action).inc(count)
        if repairs:
            log.info(
                "reconcile pass: rewired %d pods, deleted %d children, re-issuing %d tokens",
                report.rewired,
                report.deleted,
                report.reissued,
            )

    async def run_forever(self) -> None:
        while True:
            await self.sleep(self.interval)
            try:
                report = await self.run_once()
            except Exception:  # an API server that refuses or is away: the next pass tries again
                RECONCILE_PASSES.labels(outcome="error").inc()
                log.exception("reconcile pass failed; next in %.0f s", self.interval)
                continue
            RECONCILE_PASSES.labels(outcome="ok").inc()
            for measure in ("seconds", "pods", "writes"):
                LAST_PASS.labels(measure=measure).set(getattr(report, measure))
            log.debug(
                "reconcile pass over %d pods in %.2f s, %d writes", report.pods, report.seconds, report.writes
            )
