"""Per-user hub tokens: when each thing happens (the domain is `token_workers.py`).

- A user pod seen Running: issue its token once, in a background task that retries with backoff.
- Rotation: a timer on the token *Secret*, never on the pod: kopf puts a finalizer on whatever has
  a timer, and one on user pods would leave them Terminating whenever the operator is down.
- Revocation: the pod DELETED (one attempt at every token naming it), and the token Secret going
  (retried until revoked or expired, then our finalizer is taken off). Raw events everywhere:
  kopf's change handlers would copy the Secret's data (the token) into an annotation.
- A policy that starts issuing: its Running pods get tokens now, not at their next event.
"""

from __future__ import annotations

from typing import Any

import kopf

from mcp_operator.config import OperatorConfig
from mcp_operator.constants import (
    ANN_INJECTED,
    ANN_TOKEN_ID,
    GROUP,
    MANAGED_BY,
    PLURAL,
    USER_POD_LABELS,
    VERSION,
)
from mcp_operator.state import OperatorState
from mcp_operator.token_workers import is_running


def _deleted_or_running(body: kopf.Body, **kwargs: Any) -> bool:
    """Raw event filters, so kopf neither runs nor logs the handlers for every other event."""
    return kwargs.get("type") == "DELETED" or is_running(body)


def _is_going(body: kopf.Body, **kwargs: Any) -> bool:
    return kwargs.get("type") == "DELETED" or bool(body.get("metadata", {}).get("deletionTimestamp"))


async def pod_tokens(type: str | None, body: kopf.Body, memo: OperatorState, **_: Any) -> None:
    await memo.tokens.pod_event(type, body)


async def policy_tokens(type: str | None, body: kopf.Body, memo: OperatorState, **_: Any) -> None:
    await memo.tokens.policy_event(type, body)


async def rotate_token(body: kopf.Body, memo: OperatorState, retry: int = 0, **_: Any) -> None:
    await memo.tokens.rotate(body, retry)


async def revoke_on_secret_going(type: str | None, body: kopf.Body, memo: OperatorState, **_: Any) -> None:
    await memo.tokens.secret_going(type, body)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    user_pods = {"labels": USER_POD_LABELS, "annotations": {ANN_INJECTED: kopf.PRESENT}}
    token_secrets = {"labels": MANAGED_BY, "annotations": {ANN_TOKEN_ID: kopf.PRESENT}}
    kopf.on.event("pods", **user_pods, when=_deleted_or_running, registry=registry)(pod_tokens)  # type: ignore[arg-type]
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(policy_tokens)
    kopf.timer(
        "secrets",
        id="hub-token-rotation",
        interval=config.token_check_interval,
        initial_delay=config.token_check_interval,
        registry=registry,
        **token_secrets,  # type: ignore[arg-type]
    )(rotate_token)
    kopf.on.event("secrets", **token_secrets, when=_is_going, registry=registry)(revoke_on_secret_going)  # type: ignore[arg-type]
