"""`helm uninstall`'s pre-delete hook: stop the operator, revoke every hub token it minted, release
and delete their Secrets.

Without it, the namespace's token Secrets stay Terminating behind their finalizer (no operator
is left to take it off) and their hub tokens stay valid. The operator is stopped first (its
Deployment scaled to 0 and waited for), or its periodic pass would mint a fresh token for every
running server whose Secret this deletes. A token the hub cannot revoke now is reported and its
Secret released anyway: an uninstall must not hang on a hub that is down (the token still expires).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_operator.constants import ANN_HUB_API, ANN_TOKEN_ID, ANN_USER, FINALIZER, KOPF_FINALIZER
from mcp_operator.hubclient import HubPool
from mcp_operator.kube import Kube

log = logging.getLogger(__name__)

STOP_TIMEOUT = 120.0  # seconds for the operator's pod to go (its termination grace is 30 s)


@dataclass(frozen=True)
class HeldToken:
    namespace: str
    secret: str
    uid: str
    user: str | None
    token_id: str | None
    hub_api_url: str | None


def held_tokens(secrets: Sequence[Mapping[str, Any]]) -> list[HeldToken]:
    """What each of our token Secrets holds, from its metadata (pure)."""
    held = []
    for secret in secrets:
        meta = secret["metadata"]
        annotations = meta.get("annotations") or {}
        held.append(
            HeldToken(
                namespace=meta["namespace"],
                secret=meta["name"],
                uid=meta["uid"],
                user=annotations.get(ANN_USER) or None,
                token_id=annotations.get(ANN_TOKEN_ID) or None,
                hub_api_url=annotations.get(ANN_HUB_API) or None,
            )
        )
    return held


@dataclass
class UninstallReport:
    revoked: list[str] = field(default_factory=list)  # token ids
    not_revoked: list[str] = field(default_factory=list)  # "<secret>: why"
    secrets_deleted: int = 0

    def summary(self) -> str:
        lines = [
            f"revoked {len(self.revoked)} hub tokens, deleted {self.secrets_deleted} token Secrets",
            *(f"NOT revoked (it stays valid until it expires): {line}" for line in self.not_revoked),
        ]
        return "\n".join(lines)


async def stop_operator(
    kube: Kube,
    namespace: str,
    deployment: str,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    if not await kube.scale_deployment(namespace, deployment, 0):
        log.info("deployment %s/%s is gone already", namespace, deployment)
        return
    for _ in range(int(STOP_TIMEOUT)):
        if await kube.deployment_replicas(namespace, deployment) in (None, 0):
            break
        await sleep(1.0)
    else:
        raise TimeoutError(f"deployment {namespace}/{deployment} still has pods after {STOP_TIMEOUT:.0f} s")
    log.info("operator stopped (deployment %s/%s at 0 replicas)", namespace, deployment)


async def release_all(kube: Kube, hubs: HubPool | None, namespaces: Sequence[str]) -> UninstallReport:
    report = UninstallReport()
    for namespace in namespaces:
        for held in held_tokens(await kube.list_token_secrets(namespace)):
            await _release(kube, hubs, held, report)
    return report


async def _release(kube: Kube, hubs: HubPool | None, held: HeldToken, report: UninstallReport) -> None:
    if held.user and held.token_id:
        if hubs is None:
            report.not_revoked.append(f"{held.secret}: no hub service token (JUPYTERHUB_API_TOKEN)")
        else:
            try:
                await hubs.get(held.hub_api_url).revoke(held.user, held.token_id)
                report.revoked.append(held.token_id)
            except Exception as e:  # the hub down or refusing: report, and never hang the uninstall
                report.not_revoked.append(f"{held.secret}: token {held.token_id} of {held.user!r}: {e}")
    # kopf's too: no operator is left to take it off (it runs the rotation timer on the Secret).
    await kube.release_secret(held.namespace, held.secret, held.uid, (FINALIZER, KOPF_FINALIZER))
    await kube.delete_secret(held.namespace, held.secret)
    report.secrets_deleted += 1
