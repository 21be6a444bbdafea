"""Per-user hub tokens, the moving parts: `TokenReconciler` carries out `tokens.plan_tokens` against
the hub and the API server for one server; `TokenWorkers` owns the background work (issue, revoke,
release) the kopf handlers in `handlers/tokens.py` start. State lives in these objects (kept in
kopf's memo), time and sleep are injected, so tests need no patching.

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
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import kopf
from kubernetes.client.exceptions import ApiException

from mcp_operator import tokens
from mcp_operator.backoff import backoff_delay
from mcp_operator.constants import (
    ANN_EXPIRES_AT,
    ANN_HUB_API,
    ANN_INJECTED,
    ANN_TOKEN_ID,
    ANN_USER,
    CONDITION_HUB_TOKENS,
    LABEL_POD,
    MANAGED_BY,
)
from mcp_operator.endpoint import MODE_TIER
from mcp_operator.events import Events, KubeEvents, secret_reference
from mcp_operator.hubclient import HubClient, HubError, HubPool, HubRefused, HubUnavailable
from mcp_operator.kube import Kube
from mcp_operator.names import label_value
from mcp_operator.podinfo import endpoint_path, notebook_env
from mcp_operator.policy import PodIdentity, Policy
from mcp_operator.status import HubTokensReason, hub_tokens_reason
from mcp_operator.tokens import UserServer

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]
Outcome = Literal["revoked", "expired", "refused"]
NOT_CONFIGURED: HubTokensReason = "NotConfigured"


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
        mcp_path=endpoint_path(pod),
        hub_api_url=notebook_env(pod, "JUPYTERHUB_API_URL") or "",
    )


def is_running(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def final_refusal(error: HubRefused) -> bool:
    """A 4xx other than 404 (already gone: success) and 429 (try later): asking again gets the same
    answer (a service token without the scope, a malformed id...)."""
    return 400 <= error.status < 500 and error.status not in (404, 429)


class TokenReconciler:
    """Runs plans against the hub and the API server. One lock per user server: the Running
    handler and the rotation timer may fire together and must not both mint."""

    def __init__(
        self,
        hub: HubClient | HubPool,
        kube: Kube,
        *,
        hub_public_url: str | None,
        retry_delay: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        events: Events | None = None,
    ) -> None:
        self.hub = hub
        self.kube = kube
        self.hub_public_url = hub_public_url
        self.retry_delay = retry_delay
        self.clock = clock
        self.events: Events = events or KubeEvents(kube)
        self._locks: dict[str, asyncio.Lock] = {}
        self._condition: dict[tuple[str, str], tuple[bool, str]] = {}  # last HubTokens written
        self._pod_trouble: dict[str, str] = {}  # pod uid -> reason of the last Warning Event

    def hub_for(self, hub_api_url: str | None) -> HubClient:
        """The configured hub API, else the one the pod was handed (HubNotConfigured: neither)."""
        return self.hub.get(hub_api_url) if isinstance(self.hub, HubPool) else self.hub

    async def aclose(self) -> None:
        await self.hub.aclose()

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
                        f"Secret {name} of an earlier pod is still being deleted", delay=self.retry_delay
                    )
                live = tokens.live_token(existing, server.pod_uid)
                rotate_before = policy.tokens.rotate_before_seconds
                due = tokens.hub_check_due(self.clock(), live, rotate_before)
                if not thorough and not due:
                    return None
                hub = self.hub_for(server.hub_api_url)
                listed = await hub.list_tokens(server.user)
                tier = MODE_TIER[policy.tools.mode]
                plan = tokens.plan_tokens(
                    self.clock(), live, listed, (server.user, server.server_name), tier, rotate_before
                )
                if plan.mint:
                    await self._mint_into_secret(server, policy, name, existing)
                for token_id in plan.revoke:
                    await hub.revoke(server.user, token_id)
            except HubError as e:
                await self._hub_trouble(server, e)
                base = self.retry_delay if isinstance(e, HubUnavailable) else 6 * self.retry_delay
                raise kopf.TemporaryError(str(e), delay=backoff_delay(retry, base)) from e
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
        hub = self.hub_for(server.hub_api_url)
        minted = await hub.mint(
            server.user,
            scopes=server.token_scopes(MODE_TIER[policy.tools.mode]),
            expires_in=policy.tokens.ttl_seconds,
            note=tokens.token_note(server.policy, server.pod_uid),
        )
        url = tokens.endpoint_url(
            server.user,
            server.server_name,
            route_host=policy.route.host,
            hub_public_url=self.hub_public_url,
            path=server.mcp_path or None,
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
            hub_api_url=hub.api_url,
        )
        try:
            await self.kube.write_secret(manifest, existing)
        except Exception:
            # The user never saw this token: take it back rather than leave it live.
            await hub.revoke(server.user, minted.id)
            raise
        expires = manifest["metadata"]["annotations"][ANN_EXPIRES_AT]
        self.events.info(
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
        hub = self.hub_for(server.hub_api_url)
        listed = await hub.list_tokens(server.user)
        return [
            token_id
            for token_id in tokens.tokens_of_pod(listed, server.pod_uid)
            if await hub.revoke(server.user, token_id)
        ]

    def forget(self, server: UserServer) -> None:
        self._locks.pop(server.pod_uid, None)
        self._pod_trouble.pop(server.pod_uid, None)

    async def _hub_trouble(self, server: UserServer, error: HubError) -> None:
        reason: HubTokensReason = "HubUnavailable" if isinstance(error, HubUnavailable) else "HubRefused"
        message = f"cannot issue the hub token for {server.user!r}: {error}"
        # One Event per pod per kind of trouble, not one per retry.
        if self._pod_trouble.get(server.pod_uid) != reason:
            self.events.warn(server.pod_reference(), reason=reason, message=message)
            self._pod_trouble[server.pod_uid] = reason
        await self._report(server, ok=False, reason=reason, message=message)

    async def _report(self, server: UserServer, *, ok: bool, reason: HubTokensReason, message: str) -> None:
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
                CONDITION_HUB_TOKENS,
                server.namespace,
                server.policy,
                e.reason,
            )
            return
        self._condition[key] = (ok, reason)


class TokenWorkers:
    """The background work behind the token handlers, one object per operator process.

    - Issuance runs in one task per pod, so a hub outage is retried (with backoff) without holding
      up kopf's event processing, and without kopf writing anything onto the user pod.
    - Revocations run in tasks that retry while the hub is down or refusing, until the hub confirms
      (or says the token is already gone), or the token has expired anyway.
    `reconciler` is None when the operator has no hub service token: then policies asking for
    tokens are told so, and going Secrets are released.
    """

    def __init__(
        self,
        kube: Kube,
        reconciler: TokenReconciler | None,
        *,
        retry_delay: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        events: Events | None = None,
    ) -> None:
        self.kube = kube
        self.reconciler = reconciler
        self.retry_delay = retry_delay
        self.sleep = sleep
        self.clock = clock
        self.events: Events = events or KubeEvents(kube)
        self._issuers: dict[str, asyncio.Task[None]] = {}
        self._issued: set[str] = set()  # pod uids handled since start (then the rotation timer takes over)
        self._revokers: dict[str, asyncio.Task[None]] = {}
        self._released: set[str] = set()  # Secret uids dealt with (their DELETED event needs nothing)
        self._policy_generations: dict[tuple[str, str], int] = {}

    async def close(self) -> None:
        for task in [*self._issuers.values(), *self._revokers.values()]:
            task.cancel()  # a Secret's finalizer stays: the next start picks its revocation up again
        self._issuers.clear()
        self._issued.clear()
        self._revokers.clear()
        self._released.clear()
        self._policy_generations.clear()
        if self.reconciler is not None:
            await self.reconciler.aclose()

    # --- issuing and rotating ----------------------------------------------------------------------

    async def reconcile_pod(self, pod: Mapping[str, Any], *, thorough: bool, retry: int = 0) -> bool:
        """Bring one pod's token in line with its policy. True when the policy issues tokens and the
        pod holds one now (so the rotation timer can take it from here)."""
        server = user_server(pod)
        reconciler = self.reconciler
        if reconciler is None or server is None or pod.get("metadata", {}).get("deletionTimestamp"):
            return False
        obj = await self.kube.read_policy(server.namespace, server.policy)
        try:
            policy = Policy.from_object(obj) if obj else None
        except ValueError as e:  # a PolicyError (token timing included), or a field of the wrong type
            self.events.warn(server.pod_reference(), reason="BadTokenPolicy", message=str(e))
            return False
        if policy is None or not policy.tokens.issue:
            log.debug(
                "pod %s/%s: policy %s issues no hub tokens", server.namespace, server.pod_name, server.policy
            )
            self._issued.discard(server.pod_uid)  # so a policy issuing again reaches this pod
            try:
                await reconciler.withdraw(server)
            except HubError as e:
                raise kopf.TemporaryError(str(e), delay=backoff_delay(retry, self.retry_delay)) from e
            return False
        await reconciler.ensure(server, policy, thorough=thorough, retry=retry)
        return True

    async def _issue_until_done(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        retry = 0
        while True:
            try:
                # Thorough: the hub is asked, so strays from before a restart are revoked.
                if await self.reconcile_pod(pod, thorough=True, retry=retry):
                    self._issued.add(meta["uid"])
                return
            except kopf.TemporaryError as e:
                delay = e.delay or backoff_delay(retry, self.retry_delay)
            except ApiException as e:
                log.warning(
                    "hub token for pod %s: Kubernetes API said %s %s", meta["name"], e.status, e.reason
                )
                delay = backoff_delay(retry, self.retry_delay)
            except Exception:
                # A bug or a hub answer we cannot read: keep trying (slowly) rather than die unseen.
                log.exception("hub token for pod %s failed", meta["name"])
                delay = backoff_delay(retry, 6 * self.retry_delay)
            await self.sleep(delay)
            retry += 1
            current = await self.kube.read_pod(meta["namespace"], meta["name"])
            if current is None or current["metadata"]["uid"] != meta["uid"] or not is_running(current):
                return
            pod = current

    def schedule_issue(self, pod: Mapping[str, Any], *, again: bool = False) -> None:
        """Start issuing for a Running pod unless that is done or under way in this process
        (`again`: even if done, e.g. its token Secret was deleted by hand)."""
        uid = pod["metadata"]["uid"]
        if again:
            self._issued.discard(uid)
        if (
            not is_running(pod)
            or uid in self._issued
            or (uid in self._issuers and not self._issuers[uid].done())
        ):
            return
        task = asyncio.get_running_loop().create_task(self._issue_until_done(dict(pod)))
        self._issuers[uid] = task
        task.add_done_callback(
            lambda t: self._issuers.pop(uid, None) if self._issuers.get(uid) is t else None
        )

    def issuing(self, uid: str) -> bool:
        return uid in self._issuers and not self._issuers[uid].done()

    async def rotate(self, secret: Mapping[str, Any], retry: int = 0) -> None:
        """The periodic check of one token Secret: re-mint when due, through its pod."""
        if self.reconciler is None or secret["metadata"].get("deletionTimestamp"):
            return
        owner = next(
            (ref for ref in secret["metadata"].get("ownerReferences") or () if ref.get("kind") == "Pod"), None
        )
        if owner is None:
            return
        pod = await self.kube.read_pod(secret["metadata"]["namespace"], owner["name"])
        if pod is None or pod["metadata"]["uid"] != owner["uid"] or not is_running(pod):
            return  # gone or going: the garbage collector and the deletion handlers take it from here
        await self.reconcile_pod(pod, thorough=False, retry=retry)

    async def pod_event(self, type: str | None, pod: Mapping[str, Any]) -> None:
        """Running: issue once per pod and process start. DELETED: revoke."""
        if self.reconciler is None:
            return
        uid = pod["metadata"]["uid"]
        if type == "DELETED":
            task = self._issuers.pop(uid, None)
            if task is not None:
                task.cancel()
            self._issued.discard(uid)
            self._revoke_pod(pod)
        elif not pod["metadata"].get("deletionTimestamp"):
            self.schedule_issue(pod)

    async def policy_event(self, type: str | None, body: Mapping[str, Any]) -> None:
        """A policy (re)starts issuing tokens: its Running pods get theirs now, not at their next
        event. (Stopping is the rotation check's job: it withdraws.) Only spec changes count."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if type == "DELETED":
            self._policy_generations.pop(key, None)
            return
        generation = meta.get("generation", 0)
        if self._policy_generations.get(key) == generation:
            return
        try:
            policy = Policy.from_object(body)
        except ValueError:
            self._policy_generations[key] = generation
            return  # the policy controller reports invalid policies
        # The generation is recorded only once everything below went through: a failure is retried
        # at the policy's next event (the policy controller's status updates), not forgotten.
        if self.reconciler is None:
            if await self._say_not_configured(body, policy):
                self._policy_generations[key] = generation
            return
        if hub_tokens_reason(body) == NOT_CONFIGURED:  # left by an earlier run without a service token
            try:
                await self.kube.clear_policy_condition(meta["namespace"], meta["name"])
            except ApiException as e:
                log.warning(
                    "could not clear the HubTokens condition on MCPPolicy %s: %s", meta["name"], e.reason
                )
                return
        if policy.tokens.issue:
            for pod in await self.kube.list_user_pods(meta["namespace"]):
                server = user_server(pod)
                if (
                    server is not None
                    and server.policy == policy.name
                    and not pod["metadata"].get("deletionTimestamp")
                ):
                    self.schedule_issue(pod)
        self._policy_generations[key] = generation

    async def _say_not_configured(self, body: Mapping[str, Any], policy: Policy) -> bool:
        """The operator has no hub service token: a policy asking for tokens gets none, and says so
        (condition HubTokens=False NotConfigured + a Warning Event); one that stops asking, no longer.
        False when the condition could not be written (to be tried again)."""
        meta = body["metadata"]
        reason = hub_tokens_reason(body)
        try:
            if policy.tokens.issue:
                message = (
                    "tokens.issue is true, but the operator has no hub service token "
                    "(JUPYTERHUB_API_TOKEN, the chart's hub service settings): no hub tokens are minted"
                )
                self.events.warn(body, reason="HubTokensNotConfigured", message=message)
                if reason != NOT_CONFIGURED:
                    await self.kube.set_policy_condition(
                        meta["namespace"], meta["name"], status=False, reason=NOT_CONFIGURED, message=message
                    )
            elif reason == NOT_CONFIGURED:
                await self.kube.clear_policy_condition(meta["namespace"], meta["name"])
        except ApiException as e:
            log.warning("could not set the HubTokens condition on MCPPolicy %s: %s", meta["name"], e.reason)
            return False
        return True

    # --- revoking ----------------------------------------------------------------------------------

    def _start_revoker(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._revokers[key] = task
        task.add_done_callback(
            lambda t: self._revokers.pop(key, None) if self._revokers.get(key) is t else None
        )

    def _revoking(self, key: str) -> bool:
        return key in self._revokers and not self._revokers[key].done()

    async def until_revoked(
        self, what: str, attempt: Callable[[], Awaitable[None]], expires_at: datetime | None
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
                if final_refusal(e):
                    log.warning("%s: not revoked, the hub refused for good (%s)", what, e)
                    return "refused"
                error: Exception = e
            except HubError as e:
                error = e
            except Exception as e:  # a hub answer we cannot read: keep trying rather than give up unseen
                log.exception("%s: revocation failed", what)
                error = e
            delay = tokens.revocation_delay(self.clock(), expires_at, retry, self.retry_delay)
            if delay is None:
                log.warning("%s: not revoked, and expired by now (the hub no longer accepts it)", what)
                return "expired"
            if retry % 10 == 0:
                log.warning(
                    "%s: not revoked yet (%s); retrying in %.0f s until it is or it expires",
                    what,
                    error,
                    delay,
                )
            await self.sleep(delay)
            retry += 1

    def _revoke_pod(self, pod: Mapping[str, Any]) -> None:
        """One attempt at every token of ours naming the deleted pod, strays included, in a
        background task. Not retried: the token Secret's finalizer is the one revoker that retries
        (and survives restarts) for the token the user holds; a stray the hub missed here expires."""
        server = user_server(pod)
        reconciler = self.reconciler
        if reconciler is None or server is None or self._revoking(f"pod/{server.pod_uid}"):
            return
        reconciler.forget(server)

        async def once() -> None:
            try:
                revoked = await reconciler.revoke_pod_tokens(server)
            except Exception as e:  # the hub down or refusing, or an answer we cannot read
                log.warning(
                    "pod %s deleted: hub tokens of %r not revoked now (%s); the token Secret's "
                    "finalizer retries the token it holds",
                    server.pod_name,
                    server.user,
                    e,
                )
                return
            if revoked:
                log.info("pod %s deleted: revoked hub tokens %s of %s", server.pod_name, revoked, server.user)

        self._start_revoker(f"pod/{server.pod_uid}", once())

    async def release(self, namespace: str, name: str, uid: str) -> None:
        """Take our finalizer off, retrying whatever goes wrong (API errors, connection errors from
        the Kubernetes client) with backoff: a task that died here would leave the Secret Terminating."""
        retry = 0
        while True:
            try:
                await self.kube.release_secret(namespace, name, uid)
                self._released.add(uid)
                return
            except Exception as e:
                log.warning("Secret %s/%s: could not remove the finalizer: %s", namespace, name, e)
            await self.sleep(backoff_delay(retry, self.retry_delay, cap=tokens.REVOCATION_BACKOFF_CAP))
            retry += 1

    def released(self, uid: str) -> bool:
        return uid in self._released

    async def secret_going(self, type: str | None, secret: Mapping[str, Any]) -> None:
        """The Secret is going (garbage collection after its pod, or by hand): revoke what it holds,
        then take our finalizer off so the deletion completes. Without a hub service token nothing
        can be revoked: the finalizer goes, with a Warning."""
        meta = secret["metadata"]
        uid = meta["uid"]
        annotations = meta.get("annotations") or {}
        user, token_id = annotations.get(ANN_USER), annotations.get(ANN_TOKEN_ID)
        if not user or not token_id:
            return
        if uid in self._released:  # our own finalizer removal, then the deletion itself
            if type == "DELETED":
                self._released.discard(uid)
            return
        if self._revoking(f"secret/{uid}"):
            return
        namespace, name = meta["namespace"], meta["name"]
        what = f"Secret {namespace}/{name}: hub token {token_id} of {user!r}"
        reconciler = self.reconciler
        if reconciler is None:
            if type != "DELETED":
                message = (
                    f"hub token {token_id} of {user!r} not revoked: the operator has no hub service token"
                )
                log.warning("%s: not revoked, the operator has no hub service token; releasing", what)
                self.events.warn(secret_reference(meta), reason="HubTokenNotRevoked", message=message)
                self._start_revoker(f"secret/{uid}", self.release(namespace, name, uid))
            return
        try:
            expires_at = tokens.parse_hub_time(annotations.get(ANN_EXPIRES_AT))
        except ValueError:
            expires_at = None

        async def attempt() -> None:
            # at the hub it was minted at (recorded on the Secret), else the configured one
            hub = reconciler.hub_for(annotations.get(ANN_HUB_API) or None)
            if await hub.revoke(user, token_id):
                log.info("Secret %s deleted: revoked hub token %s of %s", name, token_id, user)

        async def revoke_then_release() -> None:
            if await self.until_revoked(what, attempt, expires_at) == "refused":
                self.events.warn(
                    secret_reference(meta),
                    reason="HubTokenNotRevoked",
                    message=f"the hub refused to revoke token {token_id} of {user!r} (see the operator log)",
                )
            if type == "DELETED":
                return  # already gone: held by no finalizer of ours
            await self.release(namespace, name, uid)

        self._start_revoker(f"secret/{uid}", revoke_then_release())
