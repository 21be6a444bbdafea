"""The one seam every tool call goes through.

Tools (tools.py) never check policy, audit, count metrics or report activity themselves; they
describe the call in a ``ToolCall`` and run their body through ``Guard.call``. Issue 4 fills in
policy, audit, metrics and activity here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .config import Settings

T = TypeVar("T")


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
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def is_listed(self, tool: str) -> bool:
        """Whether the tool is offered at all (tool policy)."""
        return True

    async def call(self, call: ToolCall, body: Callable[[], Awaitable[T]]) -> T:
        return await body()
