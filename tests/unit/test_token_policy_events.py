"""The token handlers' MCPPolicy event: a failed condition write is tried again at the next event."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from mcp_operator import token_handlers as th
from mcp_operator import tokens


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
    def __init__(self, kube: FlakyStatusKube) -> None:
        self.kube = kube


def policy(issue: bool, reason: str | None) -> dict[str, Any]:
    conditions = [{"type": tokens.CONDITION_TYPE, "status": "False", "reason": reason}] if reason else []
    return {
        "apiVersion": "mcp.jupyterhub.org/v1alpha1",
        "kind": "MCPPolicy",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "generation": 3},
        "spec": {"tokens": {"issue": issue}},
        "status": {"conditions": conditions},
    }


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(kopf, "warn", lambda *a, **k: None)
    th._policy_generations.clear()
    yield
    th._policy_generations.clear()


async def test_a_failed_clear_of_not_configured_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FlakyStatusKube(failures=1)
    monkeypatch.setattr(th, "_reconciler", FakeReconciler(kube))
    body = policy(issue=False, reason=th.NOT_CONFIGURED)
    try:
        await th.policy_tokens(type="MODIFIED", body=body)
    except ApiException:
        pass  # the failure may surface; what matters is that it is tried again
    await th.policy_tokens(type="MODIFIED", body=body)
    assert kube.clears == 2
    await th.policy_tokens(type="MODIFIED", body=body)  # done: the same generation is not redone
    assert kube.clears == 2


async def test_a_failed_not_configured_condition_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FlakyStatusKube(failures=1)
    monkeypatch.setattr(th, "_reconciler", None)
    monkeypatch.setattr(th, "_unconfigured", kube)
    body = policy(issue=True, reason=None)
    await th.policy_tokens(type="MODIFIED", body=body)
    await th.policy_tokens(type="MODIFIED", body=body)
    assert kube.sets == 2
    await th.policy_tokens(type="MODIFIED", body=body)
    assert kube.sets == 2
