"""The token handlers' MCPPolicy event: a failed condition write is tried again at the next event."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException
from mcp_operator.constants import CONDITION_HUB_TOKENS
from mcp_operator.token_workers import NOT_CONFIGURED, TokenWorkers


class FlakyStatusKube:
    """Writes of the policy's status fail `failures` times, then work."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.clears = 0
        self.sets = 0

    def _write(self) -> None:
        if self.failures:
            self.failures -= 1
            raise ApiException(status=500, reason="Internal Server Error")

    async def clear_policy_condition(self, namespace: str, name: str) -> None:
        self.clears += 1
        self._write()

    async def set_policy_condition(self, namespace: str, name: str, **_: Any) -> None:
        self.sets += 1
        self._write()

    async def list_user_pods(self, namespace: str) -> list[dict[str, Any]]:
        return []


class FakeReconciler:
    """Stands for a configured operator (one with a hub service token); its hub is never asked here."""


class SilentEvents:
    def info(self, *args: Any, **kwargs: Any) -> None: ...
    def warn(self, *args: Any, **kwargs: Any) -> None: ...


def policy(issue: bool, reason: str | None) -> dict[str, Any]:
    conditions = [{"type": CONDITION_HUB_TOKENS, "status": "False", "reason": reason}] if reason else []
    return {
        "apiVersion": "mcp.jupyterhub.org/v1alpha1",
        "kind": "MCPPolicy",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "generation": 3},
        "spec": {"tokens": {"issue": issue}},
        "status": {"conditions": conditions},
    }


def workers(kube: FlakyStatusKube, *, configured: bool) -> TokenWorkers:
    reconciler = FakeReconciler() if configured else None
    return TokenWorkers(kube, reconciler, events=SilentEvents())  # type: ignore[arg-type]


async def test_a_failed_clear_of_not_configured_is_retried() -> None:
    kube = FlakyStatusKube(failures=1)
    tokens = workers(kube, configured=True)
    body = policy(issue=False, reason=NOT_CONFIGURED)
    try:
        await tokens.policy_event("MODIFIED", body)
    except ApiException:
        pass  # the failure may surface; what matters is that it is tried again
    await tokens.policy_event("MODIFIED", body)
    assert kube.clears == 2
    await tokens.policy_event("MODIFIED", body)  # done: the same generation is not redone
    assert kube.clears == 2


async def test_a_failed_not_configured_condition_is_retried() -> None:
    kube = FlakyStatusKube(failures=1)
    tokens = workers(kube, configured=False)
    body = policy(issue=True, reason=None)
    await tokens.policy_event("MODIFIED", body)
    await tokens.policy_event("MODIFIED", body)
    assert kube.sets == 2
    await tokens.policy_event("MODIFIED", body)
    assert kube.sets == 2
