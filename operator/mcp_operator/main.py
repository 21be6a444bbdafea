"""kopf handlers: thin shells that feed the policy index and apply what the pure modules build.

- MCPPolicy events -> the in-memory index (the webhook's only source), re-render the children of
  the running pods the policy owns when its generation changes, and keep its status true.
- Injected user pod events -> server-side apply of Service / Ingress / NetworkPolicy. Raw events
  (`on.event`), not kopf's change handlers: those write bookkeeping annotations (and would need a
  finalizer for deletion) onto user pods; we keep user pods ours to read only. A pod's deletion
  needs no handler: its children carry ownerReferences and the garbage collector removes them.
- Restart: kopf lists everything again; each pod is re-applied once (the apply is idempotent and
  the names are fixed, so nothing is ever duplicated).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from mcp_operator.children import build_children, injected_policy
from mcp_operator.index import PolicyIndex
from mcp_operator.injection import ANN_INJECTED, InjectionOptions
from mcp_operator.metrics import CHILDREN_APPLIED, RECONCILE_ERRORS
from mcp_operator.names import child_name
from mcp_operator.policy import PodIdentity, Policy, select_policy

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "mcp.jupyterhub.org", "v1alpha1", "mcppolicies"
FIELD_MANAGER = "jupyterhub-mcp"
USER_PODS = {"component": "singleuser-server"}
APPLY = "application/apply-patch+yaml"
READY = "Ready"
STATUS_DEBOUNCE = 2.0  # seconds: 300 pods wired at once -> one status write per policy, not 300
RETRIES = 5


@dataclass
class Runtime:
    """What the handlers share; cli.main fills it before kopf starts."""

    index: PolicyIndex = field(default_factory=PolicyIndex)
    options: InjectionOptions = field(default_factory=InjectionOptions)
    ingress_selector: Mapping[str, Any] = field(default_factory=dict)
    api: k8s.ApiClient | None = None
    # pod uid -> (policy name, generation) whose children are in place; avoids re-applying on
    # every status change of a pod. Empty after a restart, so everything is checked once.
    wired: dict[str, tuple[str, int]] = field(default_factory=dict)
    _status_pending: set[tuple[str, str]] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)


runtime = Runtime()


# --- Kubernetes calls (the client is synchronous: run it off the loop) ------------------------


def _apis() -> tuple[k8s.CoreV1Api, k8s.NetworkingV1Api, k8s.CustomObjectsApi]:
    api = runtime.api
    return k8s.CoreV1Api(api), k8s.NetworkingV1Api(api), k8s.CustomObjectsApi(api)


def _apply_child(child: dict[str, Any]) -> None:
    core, net, _ = _apis()
    meta = child["metadata"]
    call = {
        "Service": core.patch_namespaced_service,
        "Ingress": net.patch_namespaced_ingress,
        "NetworkPolicy": net.patch_namespaced_network_policy,
    }[child["kind"]]
    call(meta["name"], meta["namespace"], child, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY)
    CHILDREN_APPLIED.labels(kind=child["kind"]).inc()


def _delete_child(kind: str, namespace: str, name: str) -> None:
    _, net, _ = _apis()
    call = {"Ingress": net.delete_namespaced_ingress, "NetworkPolicy": net.delete_namespaced_network_policy}
    try:
        call[kind](name, namespace)
    except ApiException as e:
        if e.status != 404:
            raise


def _user_pods(namespace: str) -> list[dict[str, Any]]:
    core, _, _ = _apis()
    # Raw JSON: the client's model deserialisation costs ~1 ms per pod, and this runs in the
    # operator's process next to the webhook while hundreds of pods spawn.
    response = core.list_namespaced_pod(
        namespace, label_selector="component=singleuser-server", _preload_content=False
    )
    try:
        items = json.loads(response.data)["items"]
    finally:
        response.release_conn()
    return items


# --- pods ---------------------------------------------------------------------------------------


def pod_reference(pod: Mapping[str, Any]) -> dict[str, Any]:
    """An Event's involvedObject (listed pods come without apiVersion/kind)."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
    }


async def wire_pod(pod: Mapping[str, Any], *, policy: Policy | None = None) -> bool:
    """Apply the children of one injected pod under its policy's current generation. True when the
    children are in place."""
    meta = pod["metadata"]
    marker = injected_policy(pod)
    if marker is None or meta.get("deletionTimestamp") or PodIdentity.of(pod) is None:
        return False  # not ours to wire: no webhook marker, going away, or no hub user to route
    policy = policy or runtime.index.get(meta["namespace"], marker[0])
    if policy is None:
        # Deleted (or broken) policy: the children stay as they are until the pod goes.
        return False
    key = (policy.name, policy.generation)
    if runtime.wired.get(meta["uid"]) == key:
        return True
    first = meta["uid"] not in runtime.wired
    children = build_children(pod, policy, runtime.ingress_selector)
    wanted = {c["kind"] for c in children}
    delay = 0.5
    for attempt in range(1, RETRIES + 1):
        try:
            # Independent objects: applied together, so a pod is wired after one round trip.
            await asyncio.gather(
                *(asyncio.to_thread(_apply_child, child) for child in children),
                *(
                    asyncio.to_thread(_delete_child, kind, meta["namespace"], child_name(pod))
                    for kind in ("Ingress", "NetworkPolicy")
                    if kind not in wanted
                ),
            )
            break
        except ApiException as e:
            RECONCILE_ERRORS.labels(kind="children").inc()
            if e.status == 404 or attempt == RETRIES:  # 404: the namespace or pod is going away
                kopf.warn(
                    pod_reference(pod),
                    reason="MCPWiringFailed",
                    message=f"could not apply the MCP Service/Ingress/NetworkPolicy: {e.status} {e.reason}",
                )
                return False
            await asyncio.sleep(delay)
            delay *= 2
    runtime.wired[meta["uid"]] = key
    if first:
        kinds = "/".join(c["kind"] for c in children)
        message = f"{kinds} {child_name(pod)} for {policy.marker}"
        kopf.info(pod_reference(pod), reason="MCPWired", message=message)
    request_status(meta["namespace"], policy.name)
    return True


@kopf.on.event("pods", labels=USER_PODS, annotations={ANN_INJECTED: kopf.PRESENT})
async def pod_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    meta = body["metadata"]
    marker = injected_policy(body)
    if type == "DELETED" or meta.get("deletionTimestamp"):
        if runtime.wired.pop(meta["uid"], None) is not None and marker:
            request_status(meta["namespace"], marker[0])
        return
    await wire_pod(body)


# --- policies -----------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def policy_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if type == "DELETED":
        runtime.index.remove(namespace, name)
        return
    before = runtime.index.get(namespace, name)
    try:
        policy = runtime.index.upsert(body)
    except ValueError as e:  # PolicyError, or a field of the wrong type
        kopf.warn(dict(body), reason="InvalidPolicy", message=str(e))
        await write_status(namespace, name, invalid=str(e))
        return
    if before is not None and before.generation == policy.generation:
        # Nothing new to render. But the index is preloaded at start-up, so a policy created or
        # edited while the operator was down arrives here already known: its status is still due.
        if (body.get("status") or {}).get("observedGeneration") != policy.generation:
            request_status(namespace, name)
        return
    pods = await asyncio.to_thread(_user_pods, namespace)
    owned = [p for p in pods if (injected_policy(p) or ("",))[0] == name]
    stale = [p for p in owned if runtime.wired.get(p["metadata"]["uid"]) != (name, policy.generation)]
    results = await asyncio.gather(*(wire_pod(p, policy=policy) for p in stale))
    if before is not None and stale:
        kopf.info(
            dict(body),
            reason="ChildrenUpdated",
            message=f"generation {policy.generation}: children of {sum(results)}/{len(stale)} pods updated",
        )
    request_status(namespace, name)


def request_status(namespace: str, name: str) -> None:
    """Refresh the policy's status soon; many requests within STATUS_DEBOUNCE make one write."""
    key = (namespace, name)
    if key in runtime._status_pending:
        return
    runtime._status_pending.add(key)

    async def later() -> None:
        await asyncio.sleep(STATUS_DEBOUNCE)
        runtime._status_pending.discard(key)
        try:
            await write_status(namespace, name)
        except ApiException as e:
            RECONCILE_ERRORS.labels(kind="status").inc()
            if e.status != 404:
                log.warning("could not write the status of MCPPolicy %s/%s: %s", namespace, name, e.reason)

    task = asyncio.get_running_loop().create_task(later())
    runtime._tasks.add(task)
    task.add_done_callback(runtime._tasks.discard)


def policy_counts(
    policy: Policy, pods: list[dict[str, Any]], policies: tuple[Policy, ...], wired: Mapping[str, Any]
) -> dict[str, int]:
    """matched: live user pods this policy wins; injected: pods with its sidecar; ready: injected
    pods whose children are in place for its current generation."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    winner = [select_policy(policies, p) for p in live]
    matched = sum(1 for w in winner if w is not None and w.name == policy.name)
    mine = [p for p in live if (injected_policy(p) or ("",))[0] == policy.name]
    ready = sum(1 for p in mine if wired.get(p["metadata"]["uid"]) == (policy.name, policy.generation))
    return {"matched": matched, "injected": len(mine), "ready": ready}


async def write_status(namespace: str, name: str, *, invalid: str | None = None) -> None:
    """Server-side apply of our part of the status: the counts and the Ready condition (the token
    handlers own the HubTokens condition; the list is a map keyed by type, so neither clobbers)."""
    _, _, custom = _apis()
    obj = await asyncio.to_thread(
        custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
    )
    generation = obj["metadata"].get("generation", 1)
    status: dict[str, Any] = {"observedGeneration": generation}
    policy = runtime.index.get(namespace, name)
    if invalid is not None or policy is None:
        ready, reason, message = "False", "InvalidPolicy", invalid or "policy not loaded"
    else:
        pods = await asyncio.to_thread(_user_pods, namespace)
        counts = policy_counts(policy, pods, runtime.index.policies(namespace), runtime.wired)
        status.update(counts)
        done = counts["ready"] == counts["injected"]
        ready = "True" if done else "False"
        reason = "ChildrenReady" if done else "Wiring"
        message = f"{counts['ready']}/{counts['injected']} injected pods wired"
    old = next((c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == READY), {})
    changed = old.get("status") != ready
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status["conditions"] = [
        {
            "type": READY,
            "status": ready,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": now
            if changed or not old.get("lastTransitionTime")
            else old["lastTransitionTime"],
        }
    ]
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MCPPolicy",
        "metadata": {"name": name},
        "status": status,
    }
    await asyncio.to_thread(
        custom.patch_namespaced_custom_object_status,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        body,
        field_manager=f"{FIELD_MANAGER}-status",
        force=True,
        _content_type=APPLY,
    )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf turns every handler log line into an Event by default; with 300 pods that floods the
    # API server. Only the explicit kopf.info/warn Events are posted.
    settings.posting.loggers = False
    # The operator watches only its own namespaces and the CRD is installed before it starts, so
    # kopf's cluster scanning (list/watch of all Namespaces and CRDs) would buy nothing and would
    # need a ClusterRole; off, kopf watches exactly the namespaces it is given.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # The synchronous Kubernetes client runs in threads; the default pool (CPUs + 4) would queue
    # the children of hundreds of pods spawning together behind a handful of workers.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="kube")
    )
