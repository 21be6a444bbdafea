"""The one seam every tool call goes through.

Tools (tools.py) never check policy, audit, count metrics or report activity themselves; they
describe the call in a ``ToolCall`` and run their body through ``Guard.call``, which checks the tool
policy, times the call, writes the audit line, counts metrics and pokes activity. An exception from
the body is recorded and re-raised unchanged.

While its body runs, a tool may add what only the body learns to the call (``current_call()``):
the cell ids a reference resolved to, and an outcome its answer does not show as an error (an
execution that timed out answers normally, with its partial output, but is audited as "timeout").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
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
    tier: str | None = None  # the highest custom:mcp tier the token holds here; None: no cap


@dataclass
class ToolCall:
    tool: str
    identity: Identity | None = None
    session_id: str | None = None
    path: str | None = None
    cells: list[str] = field(default_factory=list)
    code: str | None = None
    # Set by the body when a normal-looking answer is not "ok" (e.g. "timeout"), with the reason.
    outcome: str | None = None
    reason: str | None = None


# The call whose body runs in this task: tools describe what they learn while running.
_current: ContextVar[ToolCall | None] = ContextVar("mcp_tool_call", default=None)


def current_call() -> ToolCall | None:
    return _current.get()


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
        refusal = self.policy.refusal(call.tool, call.identity.tier if call.identity else None)
        if refusal is not None:
            self._record(call, "refused", refusal, started)
            raise ToolRefused(refusal)
        self.activity.poke()
        token = _current.set(call)
        try:
            result = await body()
        except TimeoutError as exc:
            self._record(call, "timeout", str(exc) or "timed out", started)
            raise
        except asyncio.CancelledError:
            self._record(call, "error", "cancelled by the client", started)
            raise
        except Exception as exc:
            self._record(call, "error", str(exc) or type(exc).__name__, started)
            raise
        finally:
            _current.reset(token)
        self._record(call, *answer_outcome(call, result), started)
        return result

    def _record(self, call: ToolCall, outcome: str, error: str | None, started: float) -> None:
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


def answer_outcome(call: ToolCall, result: object) -> tuple[str, str | None]:
    """Pure: (outcome, error) of a call whose body returned ``result``.

    Tools may answer with an error result instead of raising (CallToolResult.is_error); an answer
    that is not an error may still carry the outcome the body set (e.g. a timed-out execution)."""
    if getattr(result, "is_error", False):
        return call.outcome or "error", call.reason or _result_text(result)
    if call.outcome and call.outcome != "ok":
        return call.outcome, call.reason
    return "ok", None


def _result_text(result: object) -> str:
    content = getattr(result, "content", None) or []
    texts = [getattr(part, "text", "") for part in content]
    return " ".join(t for t in texts if t)[:500] or "error result"
