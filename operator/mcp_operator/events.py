"""Kubernetes Events about objects, posted through kopf (its own client, batched, rate-limited).
Domain objects take an `Events` so tests can hear them without patching kopf."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import kopf


class Events(Protocol):
    def info(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None: ...
    def warn(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None: ...


class KopfEvents:
    def info(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None:
        kopf.info(dict(obj), reason=reason, message=message)  # type: ignore[arg-type]

    def warn(self, obj: Mapping[str, Any], *, reason: str, message: str) -> None:
        kopf.warn(dict(obj), reason=reason, message=message)  # type: ignore[arg-type]


def pod_reference(pod: Mapping[str, Any]) -> dict[str, Any]:
    """An Event's involvedObject (listed pods come without apiVersion/kind)."""
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
