"""A Warning Event when the injected sidecar cannot start (issue 14 §5): a native sidecar holds the
notebook back, so without it the user sees only KubeSpawner's start timeout minutes later.

`podinfo.sidecar_not_started` is pure (the pod's status in, reason and message out); the wiring
posts it once per reason. The statuses are as the kubelet writes them; the Event is recorded
here, posting Events to the real API server is tests/operator's (KubeEvents).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from mcp_operator.index import PolicyIndex
from mcp_operator.podinfo import sidecar_not_started
from mcp_operator.wiring import ChildWiring

from tests.harness.operator import user_pod

IMAGE = "quay.io/example/jupyterhub-mcp-sidecar:0.1.0"


def with_sidecar_state(state: dict[str, Any], *, ready: bool = False) -> dict[str, Any]:
    pod = user_pod("alice")
    pod["metadata"]["uid"] = "uid-alice"
    pod["metadata"]["namespace"] = "jhub"
    sidecar = {"name": "mcp-sidecar", "image": IMAGE, "ready": ready, "state": state}
    pod["status"] = {"phase": "Pending", "initContainerStatuses": [sidecar]}
    return pod


@pytest.mark.parametrize(
    "state",
    [
        {"waiting": {"reason": "PodInitializing"}},
        {"waiting": {"reason": "ContainerCreating"}},
        {"running": {"startedAt": "2026-12-03T10:00:00Z"}},
    ],
)
def test_a_sidecar_on_its_way_is_not_reported(state: dict[str, Any]) -> None:
    assert sidecar_not_started(with_sidecar_state(state)) is None


def test_an_image_that_cannot_be_pulled_names_the_image_and_the_pre_puller() -> None:
    waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{IMAGE}"'}
    reason, message = sidecar_not_started(with_sidecar_state({"waiting": waiting})) or ("", "")
    assert reason == "ImagePullBackOff"
    assert IMAGE in message and "prePuller.extraImages" in message
    assert "start_timeout" in message  # what the user will otherwise see, and when


def test_a_crashing_sidecar_points_at_its_logs() -> None:
    state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}}
    _, message = sidecar_not_started(with_sidecar_state(state)) or ("", "")
    assert "kubectl logs jupyter-alice -c mcp-sidecar" in message


def test_a_sidecar_that_exited_with_an_error_is_reported() -> None:
    terminated = {"terminated": {"exitCode": 2, "reason": "Error"}}
    reason, message = sidecar_not_started(with_sidecar_state(terminated)) or ("", "")
    assert reason == "Error" and "exit code 2" in message


def test_a_ready_sidecar_or_a_pod_without_statuses_is_fine() -> None:
    assert sidecar_not_started(with_sidecar_state({"running": {}}, ready=True)) is None
    assert sidecar_not_started(user_pod("bob")) is None


class RecordingEvents:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, str]] = []

    def info(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None: ...

    def warn(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None:
        self.warnings.append((obj["metadata"]["name"], reason))


def test_the_wiring_warns_once_per_reason_not_on_every_status_update() -> None:
    events = RecordingEvents()
    wiring = ChildWiring(kube=None, index=PolicyIndex(), ingress_selector={}, events=events)  # type: ignore[arg-type]
    pulling = with_sidecar_state({"waiting": {"reason": "ErrImagePull"}})
    backoff = with_sidecar_state({"waiting": {"reason": "ImagePullBackOff"}})
    for pod in (pulling, pulling, backoff, backoff, backoff):
        wiring.report_sidecar(pod)
    assert events.warnings == [("jupyter-alice", "MCPSidecarNotStarted")] * 2
    wiring.report_sidecar(with_sidecar_state({"running": {}}, ready=True))
    wiring.report_sidecar(backoff)  # broke again after it had started: said again
    assert len(events.warnings) == 3
