"""kopf handlers for per-user hub tokens (issue 6): thin shells around `tokens.plan_tokens`.

When each thing happens, and why this shape:

- A user pod is seen Running (its first event after it starts, or after the operator starts):
  issue its token once, in a background task that retries with growing backoff while the hub is
  unreachable or refusing, while a Warning Event on the pod and the `HubTokens` condition on the
  MCPPolicy say what is wrong. A raw event handler (`on.event`), like the operator's other pod
  handlers: kopf's change handlers would write their bookkeeping annotations onto user pods. The
  user's server keeps running either way: nothing here blocks or touches the pod.
- Rotation: a kopf timer on the token *Secret*, not on the pod. kopf puts a finalizer on every
  object that has a timer, and a finalizer on user pods would leave them Terminating whenever the
  operator is down, so user pods never get one. The Secret is ours: its finalizer (below) only
  delays the Secret's own garbage collection.
- Revocation, two ways, both idempotent, both raw watch events (`on.event`: no kopf state), both in
  background tasks:
  1. the pod is DELETED: one attempt at every token whose note names that pod's uid (strays
     included); not retried, kept in memory only;
  2. the Secret (garbage-collected after its pod) gets a deletionTimestamp: revoke the token it
     holds, retried with backoff (at most a minute apart) while the hub is down, until the hub
     confirms (or answers 404: already gone), refuses for good (another 4xx but 429: a Warning
     Event), or the token has expired; then remove our finalizer `mcp.jupyterhub.org/revoke-token`
     (put on at creation). The finalizer keeps the Secret until then, so revocation survives hub
     outages and operator restarts, and happens for pods deleted while the operator was down. An
     operator without a hub service token removes the finalizer at once, with a Warning Event.
- A policy that stops issuing tokens (or is deleted): the next check revokes the pod's tokens and
  deletes its Secret.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from mcp_operator import tokens
from mcp_operator.hubclient import HubClient, HubError, HubRefused, HubUnavailable
from mcp_operator.injection import ANN_INJECTED, LABEL_POD
from mcp_operator.names import label_value
from mcp_operator.policy import PodIdentity, Policy
from mcp_operator.tokens import UserServer

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "jupyterhub-mcp"}
USER_PODS = {"component": "singleuser-server"}
POLICY_GROUP, POLICY_VERSION, POLICY_PLURAL = "mcp.jupyterhub.org", "v1alpha1", "mcppolicies"
FIELD_MANAGER = "jupyterhub-mcp-tokens"

# How often each token Secret is checked for rotation. Read once at import: kopf fixes a timer's
# interval when the handler is registered.
CHECK_INTERVAL = float(os.environ.get("MCP_TOKEN_CHECK_INTERVAL", "60"))
# kopf's retry delay for a handler that failed because of the hub.
RETRY_DELAY = float(os.environ.get("MCP_TOKEN_RETRY_DELAY", "10"))


def user_server(pod: Mapping[str, Any]) -> UserServer | None:
    """None for a pod that is not an injected KubeSpawner user pod."""
    meta = pod.get("metadata") or {}
    identity = PodIdentity.of(pod)
    policy = ((meta.get("annotations") or {}).get(ANN_INJECTED) or "").rsplit("/", 1)[0]
    if identity is None or not policy or not meta.get("uid"):
        return None
    return UserServer(
        namespace=meta["namespace"],
        pod_name=meta["name"],
        pod_uid=meta["uid"],
        user=identity.user,
        server_name=identity.server_name,
        policy=policy,
    )


class Kube:
    """The few Kubernetes calls this needs, off the event loop (the client is synchronous)."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self.core = k8s.CoreV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    def _dict(self, obj: Any) -> dict[str, Any]:
        return self.api.sanitize_for_serialization(obj)

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._dict(await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def write_secret(self, manifest: dict[str, Any], existing: dict[str, Any] | None) -> None:
        meta = manifest["metadata"]
        if existing is None:
            await asyncio.to_thread(self.core.create_namespaced_secret, meta["namespace"], manifest)
            return
        # Keep what others (kopf's finalizer) put on the Secret; replace data, labels, our annotations.
        old = existing["metadata"]
        meta["resourceVersion"] = old["resourceVersion"]
        kept = list(old.get("finalizers") or [])
        meta["finalizers"] = kept + [f for f in meta.get("finalizers") or () if f not in kept]
        meta["annotations"] = {**(old.get("annotations") or {}), **meta["annotations"]}
        await asyncio.to_thread(
            self.core.replace_namespaced_secret, meta["name"], meta["namespace"], manifest
        )

    async def release_secret(self, namespace: str, name: str, uid: str) -> None:
        """Take our finalizer off the Secret (its token is revoked or expired): the API server then
        finishes deleting it. A JSON patch with a `test`, so a concurrent change is never lost."""
        for _ in range(5):
            secret = await self.read_secret(namespace, name)
            if secret is None or secret["metadata"].get("uid") != uid:
                return
            finalizers = secret["metadata"].get("finalizers") or []
            if tokens.FINALIZER not in finalizers:
                return
            at = f"/metadata/finalizers/{finalizers.index(tokens.FINALIZER)}"
            patch = [{"op": "test", "path": at, "value": tokens.FINALIZER}, {"op": "remove", "path": at}]
            try:
                await asyncio.to_thread(self.core.patch_namespaced_secret, name, namespace, patch)
                return
            except ApiException as e:
                if e.status == 404:
                    return
                if e.status not in (409, 422):  # 422: the test failed, someone moved the list
                    raise
        raise kopf.TemporaryError(f"could not release Secret {name}: its finalizers keep changing")

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(self.core.delete_namespaced_secret, name, namespace)
        except ApiException as e:
            if e.status != 404:
                raise

    async def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._dict(await asyncio.to_thread(self.core.read_namespaced_pod, name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def list_user_pods(self, namespace: str) -> list[dict[str, Any]]:
        found = await asyncio.to_thread(
            self.core.list_namespaced_pod, namespace, label_selector="component=singleuser-server"
        )
        return [self._dict(pod) for pod in found.items]

    async def read_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(
                self.custom.get_namespaced_custom_object,
                POLICY_GROUP,
                POLICY_VERSION,
                namespace,
                POLICY_PLURAL,
                name,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def set_policy_condition(
        self, namespace: str, name: str, *, status: bool, reason: str, message: str
    ) -> None:
        """Server-side apply of the HubTokens condition alone, under its own field manager: the
        conditions list is a map keyed by type, so the policy controller's Ready stays its own."""
        policy = await self.read_policy(namespace, name)
        if policy is None:
            return
        condition = tokens.hub_tokens_condition(
            (policy.get("status") or {}).get("conditions") or [],
            status=status,
            reason=reason,
            message=message,
            now=datetime.now(UTC),
        )
        await self._apply_policy_status(namespace, name, {"conditions": [condition]})

    async def clear_policy_condition(self, namespace: str, name: str) -> None:
        """Drop the HubTokens condition: applying our part of the status without it removes it."""
        await self._apply_policy_status(namespace, name, None)

    async def _apply_policy_status(self, namespace: str, name: str, status: dict[str, Any] | None) -> None:
        body: dict[str, Any] = {
            "apiVersion": f"{POLICY_GROUP}/{POLICY_VERSION}",
            "kind": "MCPPolicy",
            "metadata": {"name": name},
        }
        if status is not None:
            body["status"] = status
        await asyncio.to_thread(
            self.custom.patch_namespaced_custom_object_status,
            POLICY_GROUP,
            POLICY_VERSION,
            namespace,
            POLICY_PLURAL,
            name,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )


class TokenReconciler:
    """Runs plans against the hub and the API server. One lock per user server: the Running
    handler and the rotation timer may fire together and must not both mint."""

    def __init__(
        self,
        hub: HubClient,
        kube: Kube,
        *,
        hub_public_url: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.hub = hub
        self.kube = kube
        self.hub_public_url = hub_public_url
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._condition: dict[tuple[str, str], tuple[bool, str]] = {}
        self._pod_trouble: dict[str, str] = {}  # pod uid -> reason of the last Warning Event

    def _lock(self, server: UserServer) -> asyncio.Lock:
        return self._locks.setdefault(server.pod_uid, asyncio.Lock())

    async def ensure(
        self, server: UserServer, policy: Policy, *, thorough: bool = True, retry: int = 0
    ) -> tokens.TokenPlan | None:
        """Mint, rotate and clean up one server's token so that exactly one live token of ours
        exists and the Secret holds it. `thorough=False` (the periodic check) asks the hub only
        when the Secret's token is missing or due. Returns the plan carried out, None if nothing
        needed the hub."""
        name = tokens.token_secret_name(server.user, server.server_name)
        async with self._lock(server):
            try:
                existing = await self.kube.read_secret(server.namespace, name)
                if existing and existing["metadata"].get("deletionTimestamp"):
                    raise kopf.TemporaryError(
                        f"Secret {name} of an earlier pod is still being deleted", delay=RETRY_DELAY
                    )
                live = tokens.live_token(existing, server.pod_uid)
                rotate_before = policy.tokens.rotate_before_seconds
                due = tokens.hub_check_due(self.clock(), live, rotate_before)
                if not thorough and not due:
                    return None
                listed = await self.hub.list_tokens(server.user)
                plan = tokens.plan_tokens(self.clock(), live, listed, server.scope, rotate_before)
                if plan.mint:
                    await self._mint_into_secret(server, policy, name, existing)
                for token_id in plan.revoke:
                    await self.hub.revoke(server.user, token_id)
            except HubError as e:
                await self._hub_trouble(server, e)
                base = RETRY_DELAY if isinstance(e, HubUnavailable) else 6 * RETRY_DELAY
                raise kopf.TemporaryError(str(e), delay=tokens.retry_delay(retry, base)) from e
        if plan.mint or plan.revoke:
            log.info(
                "token for %s/%s (%s): %s; revoked %s",
                server.namespace,
                server.pod_name,
                server.user,
                plan.reason,
                list(plan.revoke) or "none",
            )
        self._pod_trouble.pop(server.pod_uid, None)
        await self._report(server, ok=True, reason="Issued", message="hub tokens are minted and rotated")
        return plan

    async def _mint_into_secret(
        self, server: UserServer, policy: Policy, name: str, existing: dict[str, Any] | None
    ) -> None:
        minted = await self.hub.mint(
            server.user,
            scopes=[server.scope],
            expires_in=policy.tokens.ttl_seconds,
            note=tokens.token_note(server.policy, server.pod_uid),
        )
        url = tokens.endpoint_url(
            server.user,
            server.server_name,
            route_host=policy.route.host,
            hub_public_url=self.hub_public_url,
        )
        manifest = tokens.token_secret(
            name=name,
            pod=server.pod_reference(),
            policy=server.policy,
            server_name=server.server_name,
            user=server.user,
            token=minted,
            url=url,
            # hash-fitted like on the pod itself: pod names can be longer than a label value's 63
            labels={**MANAGED_BY, LABEL_POD: label_value(server.pod_name)},
        )
        try:
            await self.kube.write_secret(manifest, existing)
        except Exception:
            # The user never saw this token: take it back rather than leave it live.
            await self.hub.revoke(server.user, minted.id)
            raise
        expires = manifest["metadata"]["annotations"][tokens.ANN_EXPIRES_AT]
        kopf.info(
            server.pod_reference(),
            reason="HubTokenIssued",
            message=f"hub token {minted.id} in Secret {name}, expires {expires}",
        )

    async def withdraw(self, server: UserServer) -> list[str]:
        """The policy no longer issues tokens (or is gone): revoke this pod's tokens, delete its
        Secret. Costs the hub nothing for pods that never had a token."""
        name = tokens.token_secret_name(server.user, server.server_name)
        async with self._lock(server):
            existing = await self.kube.read_secret(server.namespace, name)
            if tokens.live_token(existing, server.pod_uid) is None:
                return []
            revoked = await self.revoke_pod_tokens(server)
            await self.kube.delete_secret(server.namespace, name)
        log.info(
            "tokens withdrawn for %s/%s (%s): revoked %s",
            server.namespace,
            server.pod_name,
            server.user,
            revoked,
        )
        return revoked

    async def revoke_pod_tokens(self, server: UserServer) -> list[str]:
        """Every token of ours naming this pod."""
        listed = await self.hub.list_tokens(server.user)
        return [
            token_id
            for token_id in tokens.tokens_of_pod(listed, server.pod_uid)
            if await self.hub.revoke(server.user, token_id)
        ]

    def forget(self, server: UserServer) -> None:
        self._locks.pop(server.pod_uid, None)
        self._pod_trouble.pop(server.pod_uid, None)

    async def _hub_trouble(self, server: UserServer, error: HubError) -> None:
        reason = "HubUnavailable" if isinstance(error, HubUnavailable) else "HubRefused"
        message = f"cannot issue the hub token for {server.user!r}: {error}"
        # One Event per pod per kind of trouble, not one per retry.
        if self._pod_trouble.get(server.pod_uid) != reason:
            kopf.warn(server.pod_reference(), reason=reason, message=message)
            self._pod_trouble[server.pod_uid] = reason
        await self._report(server, ok=False, reason=reason, message=message)

    async def _report(self, server: UserServer, *, ok: bool, reason: str, message: str) -> None:
        """Set the policy condition when it changes (not once per pod: 300 pods, one policy)."""
        key = (server.namespace, server.policy)
        if self._condition.get(key) == (ok, reason):
            return
        try:
            await self.kube.set_policy_condition(
                server.namespace, server.policy, status=ok, reason=reason, message=message
            )
        except ApiException as e:
            log.warning(
                "could not set the %s condition on MCPPolicy %s/%s: %s",
                tokens.CONDITION_TYPE,
                server.namespace,
                server.policy,
                e.reason,
            )
            return
        self._condition[key] = (ok, reason)


# --- kopf wiring --------------------------------------------------------------------------------

_reconciler: TokenReconciler | None = None
_unconfigured: Kube | None = None  # set instead of _reconciler when there is no hub service token


@kopf.on.startup()
async def start_token_issuer(logger: logging.Logger, **_: Any) -> None:
    global _reconciler, _unconfigured
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    if not os.environ.get("JUPYTERHUB_API_TOKEN"):
        logger.warning("JUPYTERHUB_API_TOKEN is not set: policies with tokens.issue get no hub tokens")
        _unconfigured = Kube(k8s.ApiClient())  # only to say so on those policies
        return
    _reconciler = TokenReconciler(
        HubClient.from_env(),
        Kube(k8s.ApiClient()),
        hub_public_url=os.environ.get("JUPYTERHUB_PUBLIC_URL") or None,
    )
    logger.info("hub tokens: minting through %s", _reconciler.hub.api_url)


@kopf.on.cleanup()
async def stop_token_issuer(**_: Any) -> None:
    global _reconciler, _unconfigured
    if _unconfigured is not None:
        _unconfigured.api.close()
        _unconfigured = None
    for task in list(_issuers.values()):
        task.cancel()
    _issuers.clear()
    _issued.clear()
    for task in list(_revokers.values()):
        task.cancel()  # a Secret's finalizer stays: the next start picks its revocation up again
    _revokers.clear()
    _released.clear()
    _policy_generations.clear()
    if _reconciler is not None:
        await _reconciler.hub.aclose()
        _reconciler.kube.api.close()
        _reconciler = None


async def _reconcile_pod(body: Mapping[str, Any], *, thorough: bool, retry: int = 0) -> bool:
    """Bring one pod's token in line with its policy. True when the policy issues tokens and the
    pod holds one now (so the rotation timer can take it from here)."""
    server = user_server(body)
    if _reconciler is None or server is None or body.get("metadata", {}).get("deletionTimestamp"):
        return False
    obj = await _reconciler.kube.read_policy(server.namespace, server.policy)
    try:
        policy = Policy.from_object(obj) if obj else None
        if policy is not None and policy.tokens.issue:
            tokens.check_timing(policy.tokens.ttl_seconds, policy.tokens.rotate_before_seconds)
    except ValueError as e:  # a PolicyError, or a rotate-before window not shorter than the TTL
        kopf.warn(server.pod_reference(), reason="BadTokenPolicy", message=str(e))
        return False
    if policy is None or not policy.tokens.issue:
        log.debug(
            "pod %s/%s: policy %s issues no hub tokens", server.namespace, server.pod_name, server.policy
        )
        _issued.discard(server.pod_uid)  # so a policy issuing again reaches this pod
        try:
            await _reconciler.withdraw(server)
        except HubError as e:
            raise kopf.TemporaryError(str(e), delay=tokens.retry_delay(retry, RETRY_DELAY)) from e
        return False
    await _reconciler.ensure(server, policy, thorough=thorough, retry=retry)
    return True


# Issuance runs in one background task per pod, so a hub outage is retried (with backoff) without
# holding up kopf's event processing, and without kopf writing anything onto the user pod.
_issuers: dict[str, asyncio.Task[None]] = {}
_issued: set[str] = set()  # pod uids handled since this process started (then the timer takes over)


async def _issue_until_done(pod: Mapping[str, Any]) -> None:
    meta = pod["metadata"]
    retry = 0
    while _reconciler is not None:
        try:
            # Thorough: the hub is asked, so strays from before a restart are revoked.
            if await _reconcile_pod(pod, thorough=True, retry=retry):
                _issued.add(meta["uid"])
            return
        except kopf.TemporaryError as e:
            delay = e.delay or tokens.retry_delay(retry, RETRY_DELAY)
        except ApiException as e:
            log.warning("hub token for pod %s: Kubernetes API said %s %s", meta["name"], e.status, e.reason)
            delay = tokens.retry_delay(retry, RETRY_DELAY)
        except Exception:
            # A bug or a hub answer we cannot read: keep trying (slowly) rather than die unseen.
            log.exception("hub token for pod %s failed", meta["name"])
            delay = tokens.retry_delay(retry, 6 * RETRY_DELAY)
        await asyncio.sleep(delay)
        retry += 1
        current = await _reconciler.kube.read_pod(meta["namespace"], meta["name"]) if _reconciler else None
        if current is None or current["metadata"]["uid"] != meta["uid"] or not _is_running(current):
            return
        pod = current


def _is_running(body: Mapping[str, Any], **_: Any) -> bool:
    return (body.get("status") or {}).get("phase") == "Running"


@kopf.timer(
    "secrets",
    id="hub-token-rotation",
    interval=CHECK_INTERVAL,
    initial_delay=CHECK_INTERVAL,
    labels=MANAGED_BY,
    annotations={tokens.ANN_TOKEN_ID: kopf.PRESENT},
)
async def rotate_token(body: kopf.Body, retry: int = 0, **_: Any) -> None:
    if _reconciler is None or body["metadata"].get("deletionTimestamp"):
        return
    owner = next(
        (ref for ref in body["metadata"].get("ownerReferences") or () if ref.get("kind") == "Pod"), None
    )
    if owner is None:
        return
    pod = await _reconciler.kube.read_pod(body["metadata"]["namespace"], owner["name"])
    if pod is None or pod["metadata"]["uid"] != owner["uid"] or not _is_running(pod):
        return  # gone or going: the garbage collector and the deletion handlers take it from here
    await _reconcile_pod(pod, thorough=False, retry=retry)


def _deleted_or_running(body: kopf.Body, **kwargs: Any) -> bool:
    """Raw event filters, so kopf neither runs nor logs the handlers for every other event."""
    return kwargs.get("type") == "DELETED" or _is_running(body)


def _is_going(body: kopf.Body, **kwargs: Any) -> bool:
    return kwargs.get("type") == "DELETED" or bool(body.get("metadata", {}).get("deletionTimestamp"))


@kopf.on.event("pods", labels=USER_PODS, annotations={ANN_INJECTED: kopf.PRESENT}, when=_deleted_or_running)
async def pod_tokens(type: str | None, body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
    """Running: issue once per pod and process start. DELETED: revoke. A raw event handler, like
    the operator's other pod handlers: user pods stay read-only to us (no kopf annotations)."""
    uid = body["metadata"]["uid"]
    if _reconciler is None:
        return
    if type == "DELETED":
        task = _issuers.pop(uid, None)
        if task is not None:
            task.cancel()
        _issued.discard(uid)
        await _revoke_pod(body, logger)
    elif not body["metadata"].get("deletionTimestamp"):
        _schedule_issue(body)


def _schedule_issue(pod: Mapping[str, Any]) -> None:
    """Start issuing for a Running pod unless that is done or under way in this process."""
    uid = pod["metadata"]["uid"]
    if not _is_running(pod) or uid in _issued or (uid in _issuers and not _issuers[uid].done()):
        return
    task = asyncio.get_running_loop().create_task(_issue_until_done(dict(pod)))
    _issuers[uid] = task
    task.add_done_callback(lambda t: _issuers.pop(uid, None) if _issuers.get(uid) is t else None)


_policy_generations: dict[tuple[str, str], int] = {}


@kopf.on.event(POLICY_GROUP, POLICY_VERSION, POLICY_PLURAL)
async def policy_tokens(type: str | None, body: kopf.Body, **_: Any) -> None:
    """A policy (re)starts issuing tokens: its Running pods get theirs now, not at their next event.
    (Stopping is the rotation check's job: it withdraws.) Only spec changes count, not status."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    if type == "DELETED":
        _policy_generations.pop(key, None)
        return
    generation = meta.get("generation", 0)
    if _policy_generations.get(key) == generation:
        return
    try:
        policy = Policy.from_object(body)
    except ValueError:
        _policy_generations[key] = generation
        return  # the policy controller reports invalid policies
    # The generation is recorded only once everything below went through: a failure is retried at
    # the policy's next event (the policy controller's status updates), not forgotten.
    if _reconciler is None:
        if _unconfigured is None or await _say_not_configured(_unconfigured, body, policy):
            _policy_generations[key] = generation
        return
    if _hub_tokens_reason(body) == NOT_CONFIGURED:  # left by an earlier run without a service token
        try:
            await _reconciler.kube.clear_policy_condition(meta["namespace"], meta["name"])
        except ApiException as e:
            log.warning("could not clear the HubTokens condition on MCPPolicy %s: %s", meta["name"], e.reason)
            return
    if policy.tokens.issue:
        for pod in await _reconciler.kube.list_user_pods(meta["namespace"]):
            server = user_server(pod)
            if (
                server is not None
                and server.policy == policy.name
                and not pod["metadata"].get("deletionTimestamp")
            ):
                _schedule_issue(pod)
    _policy_generations[key] = generation


# Revocations run in background tasks that retry with backoff while the hub is down or refusing,
# until the hub confirms (or says the token is already gone), or the token has expired anyway.
_revokers: dict[str, asyncio.Task[None]] = {}
_released: set[str] = set()  # Secret uids whose token is dealt with (their DELETED event needs nothing)


Outcome = Literal["revoked", "expired", "refused"]


def _final_refusal(error: HubRefused) -> bool:
    """A 4xx other than 404 (already gone: success) and 429 (try later): asking again gets the same
    answer (a service token without the scope, a malformed id...)."""
    return 400 <= error.status < 500 and error.status not in (404, 429)


async def _until_revoked(
    what: str, attempt: Callable[[], Awaitable[None]], expires_at: datetime | None
) -> Outcome:
    """Run `attempt` until it gets through: "revoked". "expired" when the token(s) expired first
    (nothing left to revoke either); "refused" when the hub said no for good (logged here)."""
    retry = 0
    while True:
        try:
            await attempt()
            return "revoked"
        except HubRefused as e:
            if e.status == 404:  # the user is gone from the hub, and their tokens with them
                return "revoked"
            if _final_refusal(e):
                log.warning("%s: not revoked, the hub refused for good (%s)", what, e)
                return "refused"
            error: Exception = e
        except HubError as e:
            error = e
        except Exception as e:  # a hub answer we cannot read: keep trying rather than give up unseen
            log.exception("%s: revocation failed", what)
            error = e
        delay = tokens.revocation_delay(datetime.now(UTC), expires_at, retry, RETRY_DELAY)
        if delay is None:
            log.warning("%s: not revoked, and expired by now (the hub no longer accepts it)", what)
            return "expired"
        if retry % 10 == 0:
            log.warning(
                "%s: not revoked yet (%s); retrying in %.0f s until it is or it expires", what, error, delay
            )
        await asyncio.sleep(delay)
        retry += 1


def _start_revoker(key: str, work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _revokers[key] = task
    task.add_done_callback(lambda t: _revokers.pop(key, None) if _revokers.get(key) is t else None)


def _running(key: str) -> bool:
    return key in _revokers and not _revokers[key].done()


NOT_CONFIGURED = "NotConfigured"


def _hub_tokens_reason(body: Mapping[str, Any]) -> str | None:
    conditions = (body.get("status") or {}).get("conditions") or ()
    return next((c.get("reason") for c in conditions if c.get("type") == tokens.CONDITION_TYPE), None)


async def _say_not_configured(kube: Kube, body: kopf.Body, policy: Policy) -> bool:
    """The operator has no hub service token: a policy asking for tokens gets none, and says so
    (condition HubTokens=False NotConfigured + a Warning Event); one that stops asking, no longer.
    False when the condition could not be written (to be tried again)."""
    meta = body["metadata"]
    reason = _hub_tokens_reason(body)
    try:
        if policy.tokens.issue:
            message = (
                "tokens.issue is true, but the operator has no hub service token "
                "(JUPYTERHUB_API_TOKEN, the chart's hub service settings): no hub tokens are minted"
            )
            kopf.warn(dict(body), reason="HubTokensNotConfigured", message=message)
            if reason != NOT_CONFIGURED:
                await kube.set_policy_condition(
                    meta["namespace"], meta["name"], status=False, reason=NOT_CONFIGURED, message=message
                )
        elif reason == NOT_CONFIGURED:
            await kube.clear_policy_condition(meta["namespace"], meta["name"])
    except ApiException as e:
        log.warning("could not set the HubTokens condition on MCPPolicy %s: %s", meta["name"], e.reason)
        return False
    return True


async def _revoke_pod(body: kopf.Body, logger: logging.Logger) -> None:
    """One attempt at every token of ours naming the deleted pod, strays included, in a background
    task. Not retried: the token Secret's finalizer is the one revoker that retries (and survives
    restarts) for the token the user holds; a stray the hub missed here expires on its own."""
    server = user_server(body)
    if _reconciler is None or server is None or _running(f"pod/{server.pod_uid}"):
        return
    _reconciler.forget(server)
    reconciler = _reconciler

    async def once() -> None:
        try:
            revoked = await reconciler.revoke_pod_tokens(server)
        except Exception as e:  # the hub down or refusing, or an answer we cannot read
            logger.warning(
                "pod %s deleted: hub tokens of %r not revoked now (%s); the token Secret's "
                "finalizer retries the token it holds",
                server.pod_name,
                server.user,
                e,
            )
            return
        if revoked:
            logger.info("pod %s deleted: revoked hub tokens %s of %s", server.pod_name, revoked, server.user)

    _start_revoker(f"pod/{server.pod_uid}", once())


def _secret_reference(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What an Event about the Secret needs: never its data (the token)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid")},
    }


async def _release(kube: Kube, namespace: str, name: str, uid: str) -> None:
    """Take our finalizer off, retrying whatever goes wrong (API errors, connection errors from the
    Kubernetes client) with backoff: a task that died here would leave the Secret Terminating."""
    retry = 0
    while True:
        try:
            await kube.release_secret(namespace, name, uid)
            _released.add(uid)
            return
        except Exception as e:
            log.warning("Secret %s/%s: could not remove the finalizer: %s", namespace, name, e)
        await asyncio.sleep(tokens.retry_delay(retry, RETRY_DELAY, cap=tokens.REVOCATION_BACKOFF_CAP))
        retry += 1


@kopf.on.event("secrets", labels=MANAGED_BY, annotations={tokens.ANN_TOKEN_ID: kopf.PRESENT}, when=_is_going)
async def revoke_on_secret_deleted(
    type: str | None, body: kopf.Body, logger: logging.Logger, **_: Any
) -> None:
    """The Secret is going (garbage collection after its pod, or by hand): revoke what it holds,
    then take our finalizer off so the deletion completes. A raw event handler on purpose: kopf's
    changing handlers would copy the Secret's data (the token) into their last-handled-configuration
    annotation. The finalizer keeps the Secret until the token is revoked (retried with backoff
    while the hub is down, across operator restarts), has expired, or the hub refused for good.
    Without a hub service token nothing can be revoked: the finalizer goes, with a Warning."""
    meta = body["metadata"]
    uid = meta["uid"]
    annotations = meta.get("annotations") or {}
    user, token_id = annotations.get(tokens.ANN_USER), annotations.get(tokens.ANN_TOKEN_ID)
    if (_reconciler is None and _unconfigured is None) or not user or not token_id:
        return
    if uid in _released:  # our own finalizer removal, then the deletion itself
        if type == "DELETED":
            _released.discard(uid)
        return
    if _running(f"secret/{uid}"):
        return
    namespace, name = meta["namespace"], meta["name"]
    what = f"Secret {namespace}/{name}: hub token {token_id} of {user!r}"
    if _reconciler is None:
        if type != "DELETED" and _unconfigured is not None:
            message = f"hub token {token_id} of {user!r} not revoked: the operator has no hub service token"
            log.warning("%s: not revoked, the operator has no hub service token; releasing", what)
            kopf.warn(_secret_reference(meta), reason="HubTokenNotRevoked", message=message)
            _start_revoker(f"secret/{uid}", _release(_unconfigured, namespace, name, uid))
        return
    try:
        expires_at = tokens.parse_hub_time(annotations.get(tokens.ANN_EXPIRES_AT))
    except ValueError:
        expires_at = None
    reconciler = _reconciler

    async def attempt() -> None:
        if await reconciler.hub.revoke(user, token_id):
            logger.info("Secret %s deleted: revoked hub token %s of %s", name, token_id, user)

    async def revoke_then_release() -> None:
        if await _until_revoked(what, attempt, expires_at) == "refused":
            kopf.warn(
                _secret_reference(meta),
                reason="HubTokenNotRevoked",
                message=f"the hub refused to revoke token {token_id} of {user!r} (see the operator log)",
            )
        if type == "DELETED":
            return  # already gone: held by no finalizer of ours
        await _release(reconciler.kube, namespace, name, uid)

    _start_revoker(f"secret/{uid}", revoke_then_release())
