"""An MCPPolicy's status (pure, no I/O): the pod counts, the `Ready` condition (children wired)
and the `HubTokens` condition (tokens issued).

Two writers apply their parts under their own field managers (the conditions list is a map keyed
by type, so neither clobbers the other); both follow one rule, `condition()`: lastTransitionTime
moves only when the condition's status does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from mcp_operator.children import injected_policy
from mcp_operator.constants import API_VERSION, CONDITION_HUB_TOKENS, CONDITION_READY, KIND
from mcp_operator.policy import Policy, select_policy
from mcp_operator.tokens import format_time

ReadyReason = Literal["ChildrenReady", "Wiring", "InvalidPolicy"]
HubTokensReason = Literal["Issued", "HubUnavailable", "HubRefused", "NotConfigured"]


def condition(
    kind: str,
    *,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
    conditions: Iterable[Mapping[str, Any]] = (),
    observed_generation: int | None = None,
) -> dict[str, Any]:
    """One condition, given the policy's current ones: its lastTransitionTime is kept unless the
    status changes (or there was none)."""
    new: dict[str, Any] = {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    old = next((c for c in conditions if c.get("type") == kind), None)
    if old and old.get("status") == new["status"] and old.get("lastTransitionTime"):
        new["lastTransitionTime"] = old["lastTransitionTime"]
    else:
        new["lastTransitionTime"] = format_time(now.replace(microsecond=0))
    return new


def hub_tokens_condition(
    conditions: Iterable[Mapping[str, Any]],
    *,
    status: bool,
    reason: HubTokensReason,
    message: str,
    now: datetime,
) -> dict[str, Any]:
    return condition(
        CONDITION_HUB_TOKENS, status=status, reason=reason, message=message, now=now, conditions=conditions
    )


def hub_tokens_reason(policy_object: Mapping[str, Any]) -> str | None:
    conditions = (policy_object.get("status") or {}).get("conditions") or ()
    return next((c.get("reason") for c in conditions if c.get("type") == CONDITION_HUB_TOKENS), None)


def policy_counts(
    policy: Policy,
    pods: list[dict[str, Any]],
    policies: tuple[Policy, ...],
    wired: Mapping[str, Any],
    reachable: Mapping[str, bool] | None = None,
) -> dict[str, int]:
    """matched: live user pods this policy wins; injected: pods with its sidecar; ready: injected
    pods whose children are in place for its current generation; reachable / unreachable: injected
    pods whose endpoint was checked (`reachability.py`), by the answer."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    winner = [select_policy(policies, p) for p in live]
    matched = sum(1 for w in winner if w is not None and w.name == policy.name)
    mine = [p for p in live if (injected_policy(p) or ("",))[0] == policy.name]
    ready = sum(1 for p in mine if wired.get(p["metadata"]["uid"]) == (policy.name, policy.generation))
    checked = [(reachable or {}).get(p["metadata"]["uid"]) for p in mine]
    return {
        "matched": matched,
        "injected": len(mine),
        "ready": ready,
        "reachable": sum(1 for c in checked if c is True),
        "unreachable": sum(1 for c in checked if c is False),
    }


def ready_status(
    policy_object: Mapping[str, Any], counts: Mapping[str, int] | None, *, invalid: str | None, now: datetime
) -> dict[str, Any]:
    """Our part of the status: the counts and `Ready`. `counts` None (with `invalid`) for a policy
    that could not be parsed."""
    generation = int(policy_object["metadata"].get("generation", 1))
    status: dict[str, Any] = {"observedGeneration": generation}
    reason: ReadyReason
    if invalid is not None or counts is None:
        ready, reason, message = False, "InvalidPolicy", invalid or "policy not loaded"
    else:
        status.update(counts)
        ready = counts["ready"] == counts["injected"]
        reason = "ChildrenReady" if ready else "Wiring"
        message = f"{counts['ready']}/{counts['injected']} injected pods wired"
    status["conditions"] = [
        condition(
            CONDITION_READY,
            status=ready,
            reason=reason,
            message=message,
            now=now,
            conditions=(policy_object.get("status") or {}).get("conditions") or (),
            observed_generation=generation,
        )
    ]
    return status


def status_body(name: str, status: Mapping[str, Any] | None) -> dict[str, Any]:
    """A server-side apply body for the status subresource; without `status`, applying it drops
    every status field of that field manager."""
    body: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}}
    if status is not None:
        body["status"] = dict(status)
    return body
