"""Injected pods and MCPPolicies -> children and policy status.

Raw events (`on.event`), not kopf's change handlers: those write bookkeeping annotations (and would
need a finalizer for deletion) onto user pods; user pods stay ours to read only. A restart lists
everything again and each pod is applied once (idempotent: fixed names, server-side apply).
"""

from __future__ import annotations

from typing import Any

import kopf

from mcp_operator.constants import ANN_INJECTED, GROUP, PLURAL, USER_POD_LABELS, VERSION
from mcp_operator.state import OperatorState


async def pod_event(type: str | None, body: kopf.Body, memo: OperatorState, **_: Any) -> None:
    await memo.wiring.pod_event(type, body)


async def policy_event(type: str | None, body: kopf.Body, memo: OperatorState, **_: Any) -> None:
    await memo.wiring.policy_event(type, body)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event(
        "pods", labels=USER_POD_LABELS, annotations={ANN_INJECTED: kopf.PRESENT}, registry=registry
    )(pod_event)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(policy_event)
