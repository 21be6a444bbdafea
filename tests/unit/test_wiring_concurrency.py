"""ChildWiring under concurrency, with a stand-in for the Kube layer that only records calls and
holds each one open until the test lets it go (the real API server is in tests/operator; what is
checked here is how many calls overlap, which a real server cannot be made to show on demand).

- A pod's event and the periodic pass asking at once make one wiring, not two.
- A pod's event does not wait for its children: the event that brings its IP routes it at once
  (kopf hands one pod's events over one at a time; a held first event held the route for seconds).
- A policy's status is written by at most one write at a time: each write lists every pod of the
  namespace, and with thousands of pods overlapping writes piled up lists (2000 pods: 5 GiB RSS).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

from mcp_operator.index import PolicyIndex
from mcp_operator.wiring import ChildWiring

from tests.harness.operator import user_pod


class HeldKube:
    """Every call waits on `release`; `running`/`peak` count overlapping calls per kind."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    async def _call(self, kind: str) -> None:
        self.calls[kind] += 1
        self.running[kind] += 1
        self.peak[kind] = max(self.peak[kind], self.running[kind])
        try:
            await self.release.wait()
        finally:
            self.running[kind] -= 1

    async def apply_child(self, child: Mapping[str, Any]) -> None:
        await self._call(f"apply {child['kind']}")

    async def delete_child(self, kind: str, namespace: str, name: str) -> None:
        await self._call(f"delete {kind}")

    async def read_policy(self, namespace: str, name: str) -> dict[str, Any]:
        await self._call("read policy")
        return {"metadata": {"name": name, "namespace": namespace, "generation": 1}}

    async def list_user_pods(self, namespace: str) -> list[dict[str, Any]]:
        await self._call("list pods")
        return []

    async def apply_policy_status(self, namespace: str, name: str, status: Any, **_: Any) -> None:
        await self._call("apply status")


class NoEvents:
    def info(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None: ...
    def warn(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None: ...


class RecordingRouter:
    """Stands in for the CHP client: records which pods' routes were asked for, with their IP."""

    def __init__(self) -> None:
        self.ensured: list[tuple[str, str | None]] = []

    async def ensure(self, pod: Mapping[str, Any], policy: Any) -> bool:
        self.ensured.append((pod["metadata"]["name"], (pod.get("status") or {}).get("podIP")))
        return True

    async def remove(self, pod: Mapping[str, Any]) -> bool:
        return True

    async def close(self) -> None: ...


def wiring(kube: HeldKube, router: RecordingRouter | None = None) -> ChildWiring:
    index = PolicyIndex()
    index.upsert(
        {
            "metadata": {"name": "pol", "namespace": "jhub", "generation": 1},
            "spec": {"route": {"mode": "proxy"}},
        }
    )
    return ChildWiring(kube, index, {}, events=NoEvents(), status_debounce=0.01, router=router)  # type: ignore[arg-type]


def injected(user: str) -> dict[str, Any]:
    pod = user_pod(user)
    pod["metadata"].update(namespace="jhub", uid=f"uid-{user}")
    pod["metadata"]["annotations"]["mcp.jupyterhub.org/injected"] = "pol/1"
    return pod


async def until(probe: Any) -> None:
    async with asyncio.timeout(5):
        while not probe():
            await asyncio.sleep(0.001)


async def test_the_event_and_the_pass_wiring_one_pod_at_once_make_one_wiring() -> None:
    kube = HeldKube()
    w = wiring(kube)
    pod = injected("alice")
    event = asyncio.create_task(w.wire_pod(pod))
    await until(lambda: kube.running["apply Service"] == 1)
    passing = asyncio.create_task(w.wire_pod(pod, again=True))
    await asyncio.sleep(0.05)
    kube.release.set()
    assert await event is True and await passing is True
    assert kube.calls["apply Service"] == 1, kube.calls
    await w.close()


async def test_the_event_bringing_the_ip_routes_while_the_children_are_still_applied() -> None:
    kube, router = HeldKube(), RecordingRouter()
    w = wiring(kube, router)
    pod = injected("alice")
    async with asyncio.timeout(2):  # the first event (no IP yet) returns with its children held
        await w.pod_event("ADDED", pod)
    await until(lambda: kube.running["apply Service"] == 1)
    running = {**pod, "status": {"phase": "Running", "podIP": "10.0.0.7"}}
    async with asyncio.timeout(2):
        await w.pod_event("MODIFIED", running)
    assert ("jupyter-alice", "10.0.0.7") in router.ensured, router.ensured
    assert kube.calls["apply Service"] == 1, "the second event started a second wiring"
    kube.release.set()
    await until(lambda: w.wired.get("uid-alice") == ("pol", 1))
    assert router.ensured[-1] == ("jupyter-alice", "10.0.0.7"), (
        "the children's wiring re-routed an older view"
    )
    await w.close()


async def test_one_status_write_per_policy_at_a_time() -> None:
    kube = HeldKube()
    w = wiring(kube)
    w.request_status("jhub", "pol")
    await until(lambda: kube.running["read policy"] == 1)  # the first write is under way, held
    for _ in range(20):  # requests keep coming (every wired pod asks) while it lasts
        w.request_status("jhub", "pol")
        await asyncio.sleep(0.02)
    assert kube.calls["read policy"] == 1, "a second write started while the first was running"
    kube.release.set()
    await until(lambda: kube.calls["apply status"] == 2)  # the held one, then one for the rest
    await asyncio.sleep(0.1)
    assert kube.calls["apply status"] == 2 and kube.peak["read policy"] == 1, kube.calls
    await w.close()


async def test_a_new_pod_is_wired_without_deletes_and_a_policy_change_prunes() -> None:
    """A new pod has no children to delete: its wiring makes only the applies (a DELETE per
    unused kind, answered 404, doubled a spawn burst's API calls). Under a new generation the
    kinds the policy no longer wants are deleted."""
    kube = HeldKube()
    kube.release.set()
    w = wiring(kube)
    pod = injected("alice")
    assert await w.wire_pod(pod) is True
    assert not [c for c in kube.calls if c.startswith("delete")], kube.calls
    w.index.upsert(
        {
            "metadata": {"name": "pol", "namespace": "jhub", "generation": 2},
            "spec": {"route": {"mode": "none"}},
        }
    )
    assert await w.wire_pod(pod) is True
    assert kube.calls["delete Ingress"] == 1 and kube.calls["delete HTTPRoute"] == 1, kube.calls
    await w.close()
