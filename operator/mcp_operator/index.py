"""The in-memory MCPPolicy index: kopf's watch writes it, the admission webhook only reads it.

The webhook runs on its own thread (so its latency does not depend on how busy the operator's
event loop is), hence copy-on-write: every change builds a new tuple and swaps it in with a single
assignment, and a reader always sees one complete snapshot without taking a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from mcp_operator.policy import Policy


class PolicyIndex:
    def __init__(self) -> None:
        self._by_namespace: dict[str, tuple[Policy, ...]] = {}
        self._write = threading.Lock()  # writers only (kopf's loop and start-up)
        self.synced = threading.Event()  # set once the initial list has been loaded

    def policies(self, namespace: str) -> tuple[Policy, ...]:
        return self._by_namespace.get(namespace, ())

    def get(self, namespace: str, name: str) -> Policy | None:
        return next((p for p in self.policies(namespace) if p.name == name), None)

    def upsert(self, obj: Mapping[str, Any]) -> Policy:
        """Parse and store one MCPPolicy object; raises PolicyError (the old entry is then dropped,
        so a broken policy never keeps injecting its previous settings)."""
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        try:
            policy = Policy.from_object(obj)
        except ValueError:
            self.remove(namespace, name)
            raise
        with self._write:
            others = tuple(p for p in self.policies(namespace) if p.name != name)
            self._by_namespace = {**self._by_namespace, namespace: (*others, policy)}
        return policy

    def remove(self, namespace: str, name: str) -> None:
        with self._write:
            kept = tuple(p for p in self.policies(namespace) if p.name != name)
            self._by_namespace = {**self._by_namespace, namespace: kept}

    def load(self, objects: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """The initial list; returns (name, error) of the objects that could not be used."""
        errors = []
        for obj in objects:
            try:
                self.upsert(obj)
            except ValueError as e:
                errors.append(((obj.get("metadata") or {}).get("name") or "?", str(e)))
        self.synced.set()
        return errors
