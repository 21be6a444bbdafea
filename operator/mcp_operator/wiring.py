"""Wiring injected pods: apply the children `children.build_children` makes (Service / Ingress /
NetworkPolicy), keep each policy's status true, re-render when a policy changes.

Driven by the raw pod and policy events (`handlers/`) and by the periodic pass (`reconcile.py`).
Never writes to user pods: their children carry ownerReferences, so the garbage collector removes
them with the pod.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from mcp_operator.backoff import backoff_delay
from mcp_operator.children import build_children, injected_policy
from mcp_operator.chp import ProxyRouter
from mcp_operator.constants import FIELD_MANAGER_STATUS, PROXY_PUBLIC_URL
from mcp_operator.events import Events, KubeEvents, pod_reference
from mcp_operator.index import PolicyIndex
from mcp_operator.kube import CHILD_KINDS, Kube
from mcp_operator.metrics import CHILDREN_APPLIED, RECONCILE_ERRORS
from mcp_operator.names import child_name
from mcp_operator.podinfo import endpoint_path, pod_ip, sidecar_not_started
from mcp_operator.policy import PodIdentity, Policy
from mcp_operator.reachability import ReachabilityProbe, probe_base
from mcp_operator.status import policy_counts, ready_status

log = logging.getLogger(__name__)

STATUS_DEBOUNCE = 2.0  # seconds: 300 pods wired at once -> one status write per policy, not 300
RETRIES = 5
FIRST_RETRY_DELAY = 0.5


class ChildWiring:
    def __init__(
        self,
        kube: Kube,
        index: PolicyIndex,
        ingress_selector: Mapping[str, Any],
        *,
        events: Events | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        status_debounce: float = STATUS_DEBOUNCE,
        router: ProxyRouter | None = None,
        extra_peers: Sequence[Mapping[str, Any]] = (),
        reachability: ReachabilityProbe | None = None,
        proxy_public_url: str = PROXY_PUBLIC_URL,
        hub_public_url: str | None = None,
    ) -> None:
        self.kube = kube
        self.router = router  # route mode proxy: the pod's route in configurable-http-proxy
        self.index = index
        self.ingress_selector = ingress_selector
        self.extra_peers = tuple(extra_peers)  # NetworkPolicy peers of every pod (the operator's option)
        self.reachability = reachability  # None: --no-check-reachable
        self.proxy_public_url = proxy_public_url
        self.hub_public_url = hub_public_url
        # pod uid -> whether its endpoint answered as the sidecar; and what was checked, so a pod
        # is asked once per policy generation and IP (a restarted pod has a new uid anyway)
        self.reachable: dict[str, bool] = {}
        self._checked: dict[str, tuple[str, int, str]] = {}
        self.sidecar_trouble: dict[str, str] = {}  # pod uid -> the reason last reported in an Event
        self.events: Events = events or KubeEvents(kube)
        self.sleep = sleep
        self.clock = clock
        self.status_debounce = status_debounce
        # pod uid -> (policy name, generation) whose children are in place; avoids re-applying on
        # every status change of a pod. Empty after a restart, so everything is checked once.
        self.wired: dict[str, tuple[str, int]] = {}
        self.wired_at: dict[str, float] = {}  # pod uid -> monotonic time its children were applied
        # pod uid -> the wiring under way, with the (policy, generation) it applies
        self._in_flight: dict[str, tuple[tuple[str, int], asyncio.Future[bool]]] = {}
        self._status_pending: set[tuple[str, str]] = set()
        self._status_writing: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.router is not None:
            await self.router.close()
        if self.reachability is not None:
            await self.reachability.close()

    # --- pods --------------------------------------------------------------------------------------

    def _policy_of(self, pod: Mapping[str, Any]) -> Policy | None:
        """The policy an injected pod is wired under; None when it is not ours to wire (no webhook
        marker, going away, no hub user to route) or its policy is gone (the pass removes the
        children)."""
        meta = pod["metadata"]
        marker = injected_policy(pod)
        if marker is None or meta.get("deletionTimestamp") or PodIdentity.of(pod) is None:
            return None
        return self.index.get(meta["namespace"], marker[0])

    async def wire_pod(
        self,
        pod: Mapping[str, Any],
        *,
        policy: Policy | None = None,
        again: bool = False,
        route: bool = True,
    ) -> bool:
        """Apply the children of one injected pod under its policy's current generation. True when
        the children are in place. `again`: apply even if this process wired it already (the
        periodic pass found them drifted or missing). `route`: then the proxy route too (False
        when the caller routed already, from a newer view of the pod than this one)."""
        policy = policy or self._policy_of(pod)
        if policy is None:
            return False
        meta = pod["metadata"]
        key = (policy.name, policy.generation)
        if not again and self.wired.get(meta["uid"]) == key:
            if route:
                await self.route(pod, policy)  # the pod may have got its IP since
            return True
        while (running := self._in_flight.get(meta["uid"])) is not None:
            running_key, running_wiring = running
            if running_key == key:
                # The pod's event and the periodic pass can ask at once: one wiring, both wait for it.
                return await asyncio.shield(running_wiring)
            # One under an older generation (the policy changed meanwhile): after it, this one.
            await asyncio.wait([running_wiring])
        future = asyncio.get_running_loop().create_future()
        self._in_flight[meta["uid"]] = (key, future)
        try:
            # Kinds the policy no longer wants are deleted only where they can exist: a pod wired
            # before under another generation, or one the periodic pass found them on. A new pod
            # has none, and two DELETEs answered 404 per pod doubled a spawn burst's API calls.
            previous = self.wired.get(meta["uid"])
            prune = again or (previous is not None and previous != key)
            wired = await self._apply_children(pod, policy, key, route=route, prune=prune)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: a failure nobody else waited for is not "never retrieved"
            raise
        else:
            future.set_result(wired)
            return wired
        finally:
            del self._in_flight[meta["uid"]]

    async def _apply_children(
        self, pod: Mapping[str, Any], policy: Policy, key: tuple[str, int], *, route: bool, prune: bool
    ) -> bool:
        meta = pod["metadata"]
        first = meta["uid"] not in self.wired
        children = build_children(pod, policy, self.ingress_selector, self.extra_peers)
        wanted = {c["kind"] for c in children}
        for attempt in range(RETRIES):
            try:
                # Independent objects: applied together, so a pod is wired after one round trip.
                await asyncio.gather(
                    *(self.kube.apply_child(child) for child in children),
                    *(
                        self.kube.delete_child(kind, meta["namespace"], child_name(pod))
                        for kind in (CHILD_KINDS if prune else ())
                        if kind not in wanted
                    ),
                )
                break
            except ApiException as e:
                RECONCILE_ERRORS.labels(kind="children").inc()
                if e.status == 404 or attempt == RETRIES - 1:  # 404: the namespace or pod is going away
                    self.events.warn(
                        pod_reference(pod),
                        reason="MCPWiringFailed",
                        message="could not apply the MCP Service/Ingress/NetworkPolicy: "
                        f"{e.status} {e.reason}",
                    )
                    return False
                await self.sleep(backoff_delay(attempt, FIRST_RETRY_DELAY))
        for child in children:
            CHILDREN_APPLIED.labels(kind=child["kind"]).inc()
        self.wired[meta["uid"]] = key
        self.wired_at[meta["uid"]] = time.monotonic()
        if route:
            await self.route(pod, policy)
        if first:
            kinds = "/".join(c["kind"] for c in children)
            self.events.info(
                pod_reference(pod),
                reason="MCPWired",
                message=f"{kinds} {child_name(pod)} for {policy.marker}",
            )
        self.request_status(meta["namespace"], policy.name)
        return True

    async def route(self, pod: Mapping[str, Any], policy: Policy) -> None:
        """The pod's proxy route (added, moved or removed; a failure is left to the next pass),
        then the Reachable check once the pod runs."""
        if self.router is not None:
            await self.router.ensure(pod, policy)
        self.check_reachable(pod, policy)

    def check_reachable(self, pod: Mapping[str, Any], policy: Policy) -> None:
        """Ask the endpoint where its users are told it is (in the background: wiring never waits
        for it); the answer goes into a pod Event and the policy's counts."""
        meta = pod["metadata"]
        ip = pod_ip(pod)
        if self.reachability is None or ip is None or (pod.get("status") or {}).get("phase") != "Running":
            return
        key = (policy.name, policy.generation, ip)
        if self._checked.get(meta["uid"]) == key:
            return
        base = probe_base(
            policy.route.mode,
            proxy_public_url=self.proxy_public_url.replace("{namespace}", meta["namespace"]),
            route_host=policy.route.host,
            hub_public_url=self.hub_public_url,
        )
        if base is None:
            return
        self._checked[meta["uid"]] = key
        url = base + endpoint_path(pod)
        probe, reference = self.reachability, pod_reference(pod)

        async def check() -> None:
            verdict = await probe.check(url)
            if self._checked.get(meta["uid"]) != key:
                return  # the pod went, or was rewired, meanwhile
            before = self.reachable.get(meta["uid"])
            self.reachable[meta["uid"]] = verdict.reachable
            if before != verdict.reachable:
                if verdict.reachable:
                    self.events.info(reference, reason="MCPReachable", message=verdict.message)
                else:
                    self.events.warn(
                        reference, reason="MCPUnreachable", message=f"{verdict.reason}: {verdict.message}"
                    )
            self.request_status(meta["namespace"], policy.name)

        self._background(check())

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` beside the caller; kept until done (cancelled on close), a failure logged."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("operator task failed", exc_info=task.exception())

        task.add_done_callback(done)

    def pod_gone(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        marker = injected_policy(pod)
        self.wired_at.pop(meta["uid"], None)
        self._checked.pop(meta["uid"], None)
        self.reachable.pop(meta["uid"], None)
        self.sidecar_trouble.pop(meta["uid"], None)
        if self.wired.pop(meta["uid"], None) is not None and marker:
            self.request_status(meta["namespace"], marker[0])

    async def pod_event(self, type: str | None, pod: Mapping[str, Any]) -> None:
        if type == "DELETED" or pod["metadata"].get("deletionTimestamp"):
            self.pod_gone(pod)
            if self.router is not None:
                await self.router.remove(pod)
        else:
            await self.pod_seen(pod)

    async def pod_seen(self, pod: Mapping[str, Any]) -> None:
        """A pod's event: its route now, its children beside it. kopf hands one object's events
        over one at a time, so awaiting the children here (a burst of spawns queues hundreds at the
        API server) held the event that brings the pod's IP, and its route, for seconds."""
        policy = self._policy_of(pod)
        if policy is None:
            return
        self.report_sidecar(pod)
        await self.route(pod, policy)
        uid = pod["metadata"]["uid"]
        if self.wired.get(uid) != (policy.name, policy.generation) and uid not in self._in_flight:
            self._background(self.wire_pod(pod, policy=policy, route=False))

    def report_sidecar(self, pod: Mapping[str, Any]) -> None:
        """A Warning on the pod when its sidecar cannot start, once per reason (kubelet retries
        bring the same status again and again)."""
        trouble = sidecar_not_started(pod)
        uid = pod["metadata"]["uid"]
        if trouble is None:
            self.sidecar_trouble.pop(uid, None)
            return
        reason, message = trouble
        if self.sidecar_trouble.get(uid) != reason:
            self.sidecar_trouble[uid] = reason
            self.events.warn(pod_reference(pod), reason="MCPSidecarNotStarted", message=message)

    # --- policies ----------------------------------------------------------------------------------

    async def policy_event(self, type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if type == "DELETED":
            self.index.remove(namespace, name)
            return
        before = self.index.get(namespace, name)
        try:
            policy = self.index.upsert(body)
        except ValueError as e:  # PolicyError, or a field of the wrong type
            self.events.warn(body, reason="InvalidPolicy", message=str(e))
            await self.write_status(namespace, name, invalid=str(e))
            return
        if before is not None and before.generation == policy.generation:
            # Nothing new to render. But the index is preloaded at start-up, so a policy created or
            # edited while the operator was down arrives here already known: its status is still due.
            if (body.get("status") or {}).get("observedGeneration") != policy.generation:
                self.request_status(namespace, name)
            return
        pods = await self.kube.list_user_pods(namespace)
        owned = [p for p in pods if (injected_policy(p) or ("",))[0] == name]
        stale = [p for p in owned if self.wired.get(p["metadata"]["uid"]) != (name, policy.generation)]
        results = await asyncio.gather(*(self.wire_pod(p, policy=policy) for p in stale))
        if before is not None and stale:
            self.events.info(
                body,
                reason="ChildrenUpdated",
                message=f"generation {policy.generation}: children of {sum(results)}/{len(stale)} pods "
                "updated",
            )
        self.request_status(namespace, name)

    # --- status ------------------------------------------------------------------------------------

    def request_status(self, namespace: str, name: str) -> None:
        """Refresh the policy's status soon; many requests within the debounce make one write, and
        one policy has at most one write under way (each lists the namespace's pods: with
        thousands of pods a write outlasts the debounce, and overlapping ones piled up lists)."""
        key = (namespace, name)
        if key in self._status_pending:
            return
        self._status_pending.add(key)

        async def later() -> None:
            await self.sleep(self.status_debounce)
            while key in self._status_writing:
                await self.sleep(self.status_debounce)
            self._status_pending.discard(key)  # requests from now on: the next write
            self._status_writing.add(key)
            try:
                await self.write_status(namespace, name)
            except ApiException as e:
                RECONCILE_ERRORS.labels(kind="status").inc()
                if e.status != 404:
                    log.warning(
                        "could not write the status of MCPPolicy %s/%s: %s", namespace, name, e.reason
                    )
            finally:
                self._status_writing.discard(key)

        self._background(later())

    async def write_status(self, namespace: str, name: str, *, invalid: str | None = None) -> None:
        """Server-side apply of our part of the status: the counts and the Ready condition."""
        obj = await self.kube.read_policy(namespace, name)
        if obj is None:
            return
        policy = self.index.get(namespace, name)
        counts = None
        if invalid is None and policy is not None:
            pods = await self.kube.list_user_pods(namespace)
            counts = policy_counts(policy, pods, self.index.policies(namespace), self.wired, self.reachable)
        status = ready_status(obj, counts, invalid=invalid, now=self.clock())
        await self.kube.apply_policy_status(namespace, name, status, field_manager=FIELD_MANAGER_STATUS)
