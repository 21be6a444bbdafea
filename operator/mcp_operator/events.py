"""Kubernetes Events about the objects the operator looks after (pods, policies, token Secrets).

Posted through the Kube layer in the background, like kopf's own queue: a caller never waits for an
Event, and one that cannot be posted is logged, never raised. (Not kopf.info/warn: those need the
context of a kopf handler, and the periodic pass runs outside any.) Domain objects take an
`Events`, so tests hear them without patching anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from mcp_operator.kube import Kube

log = logging.getLogger(__name__)
EventType = Literal["Normal", "Warning"]


class Events(Protocol):
    def info(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None: ...
    def warn(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None: ...


class KubeEvents:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._tasks: set[asyncio.Task[None]] = set()

    def info(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None:
        self._post(obj, "Normal", reason, message)

    def warn(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None:
        self._post(obj, "Warning", reason, message)

    def _post(self, obj: Mapping[str, Any], type: EventType, reason: str, message: str) -> None:
        task = asyncio.get_running_loop().create_task(self._send(involved_object(obj), type, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, ref: dict[str, Any], type: EventType, reason: str, message: str) -> None:
        try:
            await self.kube.create_event(ref, type, reason, message)
        except Exception as e:  # an Event is a courtesy: never let it break what it reports on
            log.warning("could not post the %s Event on %s %s: %s", reason, ref["kind"], ref["name"], e)


def involved_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    ref = {k: meta[k] for k in ("name", "namespace", "uid") if meta.get(k)}
    return {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", "Pod"), **ref}


def pod_reference(pod: Mapping[str, Any]) -> dict[str, Any]:
    """Enough of a pod for an Event (listed pods come without apiVersion/kind)."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
    }


def secret_reference(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What an Event about a Secret needs: never its data (the token)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid")},
    }
