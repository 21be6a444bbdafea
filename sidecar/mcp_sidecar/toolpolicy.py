"""Which tools an agent may use: mode (read-only / edit / execute) plus allow and deny lists. Pure.

The mode sets the ceiling: read-only offers the read tools, edit adds the edit tools, execute adds
the execute tools. A non-empty allow list narrows that to the tools named; the deny list always
wins. The allow list never lifts a tool above the mode (an operator that writes MCP_MODE=read-only
means it, whatever else the policy lists). Each tool's tier is declared in catalog.py.

A caller's token may cap the tier lower still (``token_tier``: the highest ``custom:mcp:<tier>``
it holds for this server, see scopes.py); it never lifts a tool above the mode either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .catalog import TOOLS, Tier, names_in
from .scopes import TIER_MODE

READ_TOOLS = names_in("read")
EDIT_TOOLS = names_in("edit")
EXECUTE_TOOLS = names_in("execute")
ALL_TOOLS = READ_TOOLS | EDIT_TOOLS | EXECUTE_TOOLS

MODE_TOOLS = {
    "read-only": READ_TOOLS,
    "edit": READ_TOOLS | EDIT_TOOLS,
    "execute": ALL_TOOLS,
}


def category(tool: str) -> Tier | Literal["unknown"]:
    return next((t.tier for t in TOOLS if t.name == tool), "unknown")


@dataclass(frozen=True)
class ToolPolicy:
    mode: str = "execute"
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.mode not in MODE_TOOLS:
            raise ValueError(f"unknown mode {self.mode!r}: expected one of {', '.join(MODE_TOOLS)}")

    def refusal(self, tool: str, token_tier: str | None = None) -> str | None:
        """None when the tool is allowed, otherwise the reason, phrased for the agent.
        ``token_tier``: the caller's token admits tools up to this tier only (None: no cap)."""
        if tool in self.deny:
            return f"tool {tool} is not allowed: it is on this server's deny list"
        if tool not in MODE_TOOLS[self.mode]:
            if tool not in ALL_TOOLS:
                return f"tool {tool} is not allowed: it is not a known tool"
            return f"tool {tool} is not allowed: the sidecar runs in {self.mode} mode"
        if token_tier is not None and tool not in MODE_TOOLS[TIER_MODE[token_tier]]:
            need = category(tool)
            return (
                f"tool {tool} is not allowed: this token holds custom:mcp:{token_tier} for this server, "
                f"and {tool} needs custom:mcp:{need}; ask for a token with custom:mcp:{need}"
            )
        if self.allow and tool not in self.allow:
            return f"tool {tool} is not allowed: it is not on this server's allow list"
        return None

    def allows(self, tool: str) -> bool:
        return self.refusal(tool) is None

    def allowed(self, tools: Iterable[str] = ALL_TOOLS) -> frozenset[str]:
        return frozenset(t for t in tools if self.allows(t))

    def warnings(self) -> list[str]:
        """Configuration mistakes worth a log line: names that match no tool, allows the mode overrides."""
        out = [
            f"{what} names unknown tool {name!r} (known: {', '.join(sorted(ALL_TOOLS))})"
            for what, names in (("MCP_ALLOW_TOOLS", self.allow), ("MCP_DENY_TOOLS", self.deny))
            for name in sorted(names - ALL_TOOLS)
        ]
        out += [
            f"MCP_ALLOW_TOOLS lists {name!r}, but {self.mode} mode does not offer it"
            for name in sorted((self.allow & ALL_TOOLS) - MODE_TOOLS[self.mode])
        ]
        return out
