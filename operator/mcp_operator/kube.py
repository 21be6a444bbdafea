"""Every Kubernetes API call the operator makes (kopf's own watches and Events aside).

One `ApiClient`, built once at start-up. The client is synchronous, so each call runs in a thread
(`asyncio.to_thread`); lists of pods and children are read as raw JSON (the client's model
deserialisation costs ~1 ms per object, and this runs next to the webhook while hundreds of pods
spawn). Children and policy status are written with server-side apply. Each request is counted by
verb (`mcp_operator_api_requests_total`), so a reconcile pass that finds nothing drifted can be
shown to write nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from mcp_operator.constants import (
    APPLY_PATCH,
    FIELD_MANAGER,
    FIELD_MANAGER_TOKENS,
    FINALIZER,
    GATEWAY_GROUP,
    GATEWAY_VERSION,
    GROUP,
    HTTPROUTES,
    MANAGED_BY_SELECTOR,
    PLURAL,
    USER_POD_SELECTOR,
    VERSION,
)
from mcp_operator.metrics import API_REQUESTS
from mcp_operator.status import HubTokensReason, hub_tokens_condition, status_body

T = TypeVar("T")
Verb = Literal["get", "list", "create", "update", "patch", "apply", "delete"]
ChildKind = Literal["Service", "Ingress", "NetworkPolicy", "HTTPRoute"]
CHILD_KINDS: tuple[ChildKind, ...] = ("Service", "Ingress", "NetworkPolicy", "HTTPRoute")
EVENT_SOURCE = "jupyterhub-mcp"
WRITE_VERBS: frozenset[Verb] = frozenset({"create", "update", "patch", "apply", "delete"})


def build_api_client(pool_size: int = 32) -> k8s.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (tests, local runs)."""
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    configuration = k8s.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool_size  # children are applied from a thread pool
    return k8s.ApiClient(configuration)


async def none_if_missing(call: Callable[[], T]) -> T | None:
    """Run a blocking API call off the loop; a 404 is None, anything else raises."""
    try:
        return await asyncio.to_thread(call)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


class FinalizerRace(Exception):
    """Our finalizer could not be taken off: the Secret's finalizers kept changing under us."""


class Kube:
    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        # Typed as Any: we hand the client plain dicts (it accepts them), not its model classes.
        self.core: Any = k8s.CoreV1Api(api)
        self.net: Any = k8s.NetworkingV1Api(api)
        self.custom: Any = k8s.CustomObjectsApi(api)
        self.apps: Any = k8s.AppsV1Api(api)
        self.requests: Counter[str] = Counter()  # verb -> count, for tests and the bench

    def close(self) -> None:
        self.api.close()

    def _count(self, verb: Verb) -> None:
        self.requests[verb] += 1
        API_REQUESTS.labels(verb=verb).inc()

    def writes(self) -> int:
        return sum(n for verb, n in self.requests.items() if verb in WRITE_VERBS)

    def _dict(self, obj: Any) -> dict[str, Any]:
        return self.api.sanitize_for_serialization(obj)

    def _raw_items(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        response = call(*args, _preload_content=False, **kwargs)
        try:
            return json.loads(response.data)["items"] or []
        finally:
            response.release_conn()

    # --- cluster ---------------------------------------------------------------------------------

    def server_version(self) -> tuple[str, str, str]:
        """(major, minor, gitVersion); called once at start-up, before the loop runs."""
        version = k8s.VersionApi(self.api).get_code()
        return version.major, version.minor, version.git_version

    # --- pods ------------------------------------------------------------------------------------

    async def list_user_pods(self, namespace: str) -> list[dict[str, Any]]:
        self._count("list")
        return await asyncio.to_thread(
            self._raw_items, self.core.list_namespaced_pod, namespace, label_selector=USER_POD_SELECTOR
        )

    async def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._count("get")
        pod = await none_if_missing(lambda: self.core.read_namespaced_pod(name, namespace))
        return None if pod is None else self._dict(pod)

    # --- children (Service / Ingress / NetworkPolicy of an injected pod) ---------------------------

    def _child_calls(
        self, kind: ChildKind
    ) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        """(list, apply, delete) for one kind of child."""
        if kind == "Service":
            return (
                self.core.list_namespaced_service,
                self.core.patch_namespaced_service,
                self.core.delete_namespaced_service,
            )
        if kind == "HTTPRoute":  # Gateway API, a custom resource
            gw = (GATEWAY_GROUP, GATEWAY_VERSION)
            return (
                lambda ns, **kw: self.custom.list_namespaced_custom_object(*gw, ns, HTTPROUTES, **kw),
                lambda name, ns, body, **kw: self.custom.patch_namespaced_custom_object(
                    *gw, ns, HTTPROUTES, name, body, **kw
                ),
                lambda name, ns: self.custom.delete_namespaced_custom_object(*gw, ns, HTTPROUTES, name),
            )
        if kind == "Ingress":
            return (
                self.net.list_namespaced_ingress,
                self.net.patch_namespaced_ingress,
                self.net.delete_namespaced_ingress,
            )
        return (
            self.net.list_namespaced_network_policy,
            self.net.patch_namespaced_network_policy,
            self.net.delete_namespaced_network_policy,
        )

    async def list_children(self, namespace: str, kind: ChildKind) -> list[dict[str, Any]]:
        """Our children of one kind in a namespace (by the managed-by label), as raw JSON."""
        self._count("list")
        listing, _, _ = self._child_calls(kind)
        try:
            items = await asyncio.to_thread(
                self._raw_items, listing, namespace, label_selector=MANAGED_BY_SELECTOR
            )
        except ApiException as e:
            if e.status == 404 and kind == "HTTPRoute":
                return []  # the Gateway API is not installed: there can be none of ours
            raise
        for item in items:  # listed items come without kind
            item.setdefault("kind", kind)
        return items

    async def apply_child(self, child: Mapping[str, Any]) -> None:
        self._count("apply")
        _, apply, _ = self._child_calls(child["kind"])
        meta = child["metadata"]
        await asyncio.to_thread(
            apply,
            meta["name"],
            meta["namespace"],
            child,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )

    async def delete_child(self, kind: ChildKind, namespace: str, name: str) -> None:
        self._count("delete")
        _, _, delete = self._child_calls(kind)
        await none_if_missing(lambda: delete(name, namespace))

    # --- the operator's own Deployment (the uninstall hook) -----------------------------------------

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> bool:
        """False when there is no such Deployment."""
        self._count("patch")
        body = {"spec": {"replicas": replicas}}
        done = await none_if_missing(
            lambda: self.apps.patch_namespaced_deployment_scale(name, namespace, body)
        )
        return done is not None

    async def deployment_replicas(self, namespace: str, name: str) -> int | None:
        """Pods the Deployment still has (status.replicas); None when it is gone."""
        self._count("get")
        deployment = await none_if_missing(lambda: self.apps.read_namespaced_deployment(name, namespace))
        return None if deployment is None else (deployment.status.replicas or 0)

    # --- token Secrets ---------------------------------------------------------------------------

    async def list_token_secrets(self, namespace: str) -> list[dict[str, Any]]:
        """Our token Secrets, metadata only: a pass never needs (or holds) the tokens themselves."""
        self._count("list")
        items = await asyncio.to_thread(
            self._raw_items, self.core.list_namespaced_secret, namespace, label_selector=MANAGED_BY_SELECTOR
        )
        return [{"metadata": item["metadata"]} for item in items]

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._count("get")
        secret = await none_if_missing(lambda: self.core.read_namespaced_secret(name, namespace))
        return None if secret is None else self._dict(secret)

    async def write_secret(self, manifest: dict[str, Any], existing: Mapping[str, Any] | None) -> None:
        """Create, or replace keeping what others (kopf) put on the Secret: their finalizers and
        annotations stay; data, labels and our annotations are ours."""
        meta = manifest["metadata"]
        if existing is None:
            self._count("create")
            await asyncio.to_thread(self.core.create_namespaced_secret, meta["namespace"], manifest)
            return
        old = existing["metadata"]
        meta["resourceVersion"] = old["resourceVersion"]
        kept = list(old.get("finalizers") or [])
        meta["finalizers"] = kept + [f for f in meta.get("finalizers") or () if f not in kept]
        meta["annotations"] = {**(old.get("annotations") or {}), **meta["annotations"]}
        self._count("update")
        await asyncio.to_thread(
            self.core.replace_namespaced_secret, meta["name"], meta["namespace"], manifest
        )

    async def release_secret(
        self, namespace: str, name: str, uid: str, finalizers: Collection[str] = (FINALIZER,)
    ) -> None:
        """Take our finalizer (or the given ones) off the Secret (its token is revoked or expired):
        the API server then finishes deleting it. A JSON patch with a `test` per removed entry, so a
        concurrent change is never lost."""
        for _ in range(5):
            secret = await self.read_secret(namespace, name)
            if secret is None or secret["metadata"].get("uid") != uid:
                return
            present = list(secret["metadata"].get("finalizers") or [])
            doomed = [i for i, f in enumerate(present) if f in finalizers]
            if not doomed:
                return
            patch: list[dict[str, Any]] = []
            for i in reversed(doomed):  # from the end: each removal leaves the earlier indexes alone
                at = f"/metadata/finalizers/{i}"
                patch += [{"op": "test", "path": at, "value": present[i]}, {"op": "remove", "path": at}]
            self._count("patch")
            try:
                await asyncio.to_thread(self.core.patch_namespaced_secret, name, namespace, patch)
                return
            except ApiException as e:
                if e.status == 404:
                    return
                if e.status not in (409, 422):  # 422: a test failed, someone moved the list
                    raise
        raise FinalizerRace(f"could not release Secret {name}: its finalizers keep changing")

    async def delete_secret(self, namespace: str, name: str) -> None:
        self._count("delete")
        await none_if_missing(lambda: self.core.delete_namespaced_secret(name, namespace))

    # --- Events ------------------------------------------------------------------------------------

    async def create_event(self, ref: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        """A core/v1 Event on `ref` (an involvedObject: apiVersion, kind, name, namespace, uid)."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "metadata": {"generateName": f"{ref['name']}."[:200], "namespace": ref["namespace"]},
            "involvedObject": dict(ref),
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": EVENT_SOURCE},
            "reportingComponent": EVENT_SOURCE,
            "reportingInstance": EVENT_SOURCE,
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "eventTime": now,
            "action": reason,
            "count": 1,
        }
        self._count("create")
        await asyncio.to_thread(self.core.create_namespaced_event, ref["namespace"], body)

    # --- MCPPolicies -----------------------------------------------------------------------------

    async def list_policies(self, namespace: str) -> list[dict[str, Any]]:
        self._count("list")
        listed = await asyncio.to_thread(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
        )
        return list(listed.get("items") or [])

    async def read_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._count("get")
        return await none_if_missing(
            lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        )

    async def set_policy_condition(
        self, namespace: str, name: str, *, status: bool, reason: HubTokensReason, message: str
    ) -> None:
        """The HubTokens condition alone, under its own field manager (the Ready condition is the
        children's writer's)."""
        policy = await self.read_policy(namespace, name)
        if policy is None:
            return
        condition = hub_tokens_condition(
            (policy.get("status") or {}).get("conditions") or [],
            status=status,
            reason=reason,
            message=message,
            now=datetime.now(UTC),
        )
        await self.apply_policy_status(
            namespace, name, {"conditions": [condition]}, field_manager=FIELD_MANAGER_TOKENS
        )

    async def clear_policy_condition(self, namespace: str, name: str) -> None:
        """Drop the HubTokens condition: applying our part of the status without it removes it."""
        await self.apply_policy_status(namespace, name, None, field_manager=FIELD_MANAGER_TOKENS)

    async def apply_policy_status(
        self, namespace: str, name: str, status: Mapping[str, Any] | None, *, field_manager: str
    ) -> None:
        """Server-side apply of one writer's part of a policy's status (None: drop that part)."""
        self._count("apply")
        await asyncio.to_thread(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            status_body(name, status),
            field_manager=field_manager,
            force=True,
            _content_type=APPLY_PATCH,
        )
