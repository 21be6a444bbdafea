"""The audit log: one JSON line per tool call, to stdout, a file, or nowhere (MCP_AUDIT_LOG=off).

The record is built by a pure function from the ``ToolCall`` and the outcome; the writer only
appends lines. Identity never carries a token, so no token can reach a line; code and cell source
appear only with MCP_AUDIT_INCLUDE_CODE=1.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from .config import ConfigError

if TYPE_CHECKING:
    from .config import Settings
    from .guard import ToolCall

OUTCOMES = ("ok", "error", "refused", "timeout")


def audit_record(
    call: ToolCall,
    *,
    outcome: str,
    duration_ms: float,
    error: str | None = None,
    include_code: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    identity = call.identity
    record: dict[str, Any] = {
        "ts": (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "user": identity.user if identity else None,
        "auth": identity.kind if identity else None,
        "token_id": identity.token_id if identity else None,
        "token_note": identity.token_note if identity else None,
        "session": call.session_id,
        "tool": call.tool,
        "path": call.path,
        "cells": list(call.cells),
        "outcome": outcome,
        "error": error,
        "duration_ms": round(duration_ms, 2),
    }
    if include_code and call.code is not None:
        record["code"] = call.code
    return record


class AuditLog:
    """Appends JSON lines. Thread-safe; never raises into a tool call (a full disk loses lines)."""

    def __init__(self, stream: IO[str] | None, *, include_code: bool = False, owns_stream: bool = False):
        self.stream = stream
        self.include_code = include_code
        self._owns_stream = owns_stream
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        target = settings.audit_log.strip()
        if target.lower() == "off":
            return cls(None)
        if target.lower() == "stdout":
            return cls(sys.stdout, include_code=settings.audit_include_code)
        # Line-buffered append: every record reaches the file as a whole line at once.
        try:
            stream = open(target, "a", buffering=1, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open MCP_AUDIT_LOG {target}: {exc.strerror}") from exc
        return cls(stream, include_code=settings.audit_include_code, owns_stream=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.stream is None:
            return
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        try:
            with self._lock:
                self.stream.write(line)
                self.stream.flush()
        except (OSError, ValueError):
            pass  # the audit sink is gone (closed, disk full): the tool call itself must not fail

    def close(self) -> None:
        if self._owns_stream and self.stream is not None:
            self.stream.close()
        self.stream = None
