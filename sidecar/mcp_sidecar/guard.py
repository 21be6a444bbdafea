"""The one seam every tool call goes through.

Tools (tools.py) never check policy, audit, count metrics or report activity themselves; they
describe the call in a ``ToolCall`` and run their body through ``Guard.call``, which checks the tool
policy, times the call, writes the audit line, counts metrics and pokes activity. An exception from
the body is recorded and re-raised unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from . import metrics
from .activity import ActivityReporter
from .audit import AuditLog, audit_record
from .config import Settings
from .toolpolicy import ToolPolicy

T = TypeVar("T")
log = logging.getLogger(__name__)


class ToolRefused(Exception):
    """A tool call the policy forbids; the message says why and is shown to the agent."""


@dataclass(frozen=True)
class Identity:
    """Who is calling, as established by the auth middleware (never holds the token itself)."""

    user: str | None
    kind: str  # "hub" or "static"
    token_id: str | None = None
    token_note: str | None = None
    scopes: frozenset[str] = frozenset()


@dataclass
class ToolCall:
    tool: str
    identity: Identity | None = None
    session_id: str | None = None
    path: str | None = None
    cells: list[str] = field(default_factory=list)
    code: str | None = None


class Guard:
    def __init__(
        self,
        settings: Settings,
        *,
        audit: AuditLog | None = None,
        activity: ActivityReporter | None = None,
    ) -> None:
        self.settings = settings
        self.policy = ToolPolicy(settings.mode, settings.allow_tools, settings.deny_tools)
        for warning in self.policy.warnings():
            log.warning("tool policy: %s", warning)
        self.audit = audit or AuditLog.from_settings(settings)
        self.activity = activity or ActivityReporter(settings)

    def is_listed(self, tool: str) -> bool:
        """Whether the tool is offered at all (tool policy)."""
        return self.policy.allows(tool)

    async def call(self, call: ToolCall, body: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        refusal = self.policy.refusal(call.tool)
        if refusal is not None:
            self._record(call, "refused", started, refusal)
            raise ToolRefused(refusal)
        self.activity.poke()
        try:
            result = await body()
        except TimeoutError as exc:
            self._record(call, "timeout", started, str(exc) or "timed out")
            raise
        except asyncio.CancelledError:
            self._record(call, "error", started, "cancelled by the client")
            raise
        except Exception as exc:
            self._record(call, "error", started, str(exc) or type(exc).__name__)
            raise
        # Tools may answer with an error result instead of raising (CallToolResult.is_error).
        failed = bool(getattr(result, "is_error", False))
        self._record(call, "error" if failed else "ok", started, _result_text(result) if failed else None)
        return result

    def _record(self, call: ToolCall, outcome: str, started: float, error: str | None) -> None:
        seconds = time.perf_counter() - started
        metrics.record_tool_call(call.tool, outcome, seconds)
        self.audit.write(
            audit_record(
                call,
                outcome=outcome,
                duration_ms=seconds * 1000,
                error=error,
                include_code=self.settings.audit_include_code,
            )
        )

    async def aclose(self) -> None:
        await self.activity.aclose()
        self.audit.close()


def _result_text(result: object) -> str:
    content = getattr(result, "content", None) or []
    texts = [getattr(part, "text", "") for part in content]
    return " ".join(t for t in texts if t)[:500] or "error result"
