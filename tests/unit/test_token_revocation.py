"""The revocation loops of the token handlers: which hub answers end them, and that nothing the
Kubernetes client raises ends the finalizer's release unseen."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_operator import tokens
from mcp_operator.hubclient import HubRefused, HubUnavailable
from mcp_operator.token_workers import TokenWorkers
from urllib3.exceptions import MaxRetryError, NewConnectionError


class NoSleep(Exception):
    """Raised instead of sleeping: the loop wanted to retry."""


async def refuse_to_sleep(delay: float) -> None:
    raise NoSleep(delay)


@pytest.fixture
def workers() -> TokenWorkers:
    """Workers whose every retry would sleep: refused, so a test sees that the loop wanted one."""
    return TokenWorkers(None, None, sleep=refuse_to_sleep)  # type: ignore[arg-type]


def attempt_raising(error: Exception) -> tuple[list[int], Any]:
    calls: list[int] = []

    async def attempt() -> None:
        calls.append(1)
        raise error

    return calls, attempt


@pytest.mark.parametrize("status", [400, 401, 403, 422])
async def test_a_final_hub_refusal_ends_the_revocation(workers: TokenWorkers, status: int) -> None:
    calls, attempt = attempt_raising(HubRefused(status, "no"))
    assert await workers.until_revoked("t", attempt, None) == "refused"
    assert calls == [1]


async def test_a_404_means_already_revoked(workers: TokenWorkers) -> None:
    _, attempt = attempt_raising(HubRefused(404, "no such token"))
    assert await workers.until_revoked("t", attempt, None) == "revoked"


@pytest.mark.parametrize(
    "error", [HubRefused(429, "slow down"), HubRefused(500, "oops"), HubUnavailable("down")]
)
async def test_transient_hub_trouble_is_retried(workers: TokenWorkers, error: Exception) -> None:
    calls, attempt = attempt_raising(error)
    with pytest.raises(NoSleep):
        await workers.until_revoked("t", attempt, None)
    assert calls == [1]


class FlakyKube:
    """release_secret fails the way the Kubernetes client fails when the API server is unreachable."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def release_secret(self, namespace: str, name: str, uid: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise MaxRetryError(None, "/api/v1", NewConnectionError(None, "connection refused"))  # type: ignore[arg-type]


async def test_release_survives_kubernetes_connection_errors() -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    kube = FlakyKube(failures=3)
    workers = TokenWorkers(kube, None, sleep=sleep)  # type: ignore[arg-type]
    await workers.release("ns", "mcp-token-alice", "uid-1")
    assert kube.calls == 4 and workers.released("uid-1")
    assert len(slept) == 3 and max(slept) <= tokens.REVOCATION_BACKOFF_CAP
