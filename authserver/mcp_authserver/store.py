"""Where the authorization server keeps its state: registered clients, pending authorization
requests, codes, refresh grants. Everything secret is kept as its sha256, never in clear.

Local mode: one JSON file, read and rewritten under an exclusive ``flock`` for each change (so two
processes on one machine agree) and replaced atomically (a crash leaves the old or the new file,
never half of one). In Kubernetes the same document lives in a Secret, changed with
resourceVersion-checked updates (see the README); the interface below is what both implement.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

SECTIONS = ("clients", "pending", "logins", "codes", "used_codes", "grants", "used_refresh")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def purge(data: dict[str, Any], now: float) -> None:
    """Pure: drop whatever has expired (every entry but a client carries ``expires_at``)."""
    for section in SECTIONS:
        if section == "clients":
            continue
        entries = data.setdefault(section, {})
        for key in [k for k, v in entries.items() if v.get("expires_at", now + 1) <= now]:
            del entries[key]


class JsonFileStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = asyncio.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        for section in SECTIONS:
            data.setdefault(section, {})
        return data

    def _save(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[dict[str, Any]]:
        """The whole state, to read and change; written back when the block ends without error."""
        async with self._lock:
            lock_path = self.path.with_name(self.path.name + ".lock")
            fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                data = self._load()
                purge(data, self.clock())
                yield data
                self._save(data)
            finally:
                os.close(fd)  # closing releases the flock

    async def read(self) -> dict[str, Any]:
        async with self.change() as data:
            return data
