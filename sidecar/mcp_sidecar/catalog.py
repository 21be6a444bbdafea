"""Every tool the sidecar offers, declared once: its name, its policy tier and its MCP hints. Pure.

The tool policy (toolpolicy.py) derives its tiers from this list and the tools (tools.py) register
from it, so a tool cannot be offered without a tier or tiered without being offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mcp.types import ToolAnnotations

Tier = Literal["read", "edit", "execute"]

READS = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
EDITS = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DESTROYS = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
# Running code can do anything the kernel can (delete files, overwrite state): destructive.
RUNS_CODE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)


@dataclass(frozen=True)
class ToolDeclaration:
    name: str  # also the name of the NotebookTools method that implements it
    tier: Tier  # the lowest mode that offers it
    hints: ToolAnnotations  # what the client is told the tool does


# In the order clients list them.
TOOLS: tuple[ToolDeclaration, ...] = (
    ToolDeclaration("list_files", "read", READS),
    ToolDeclaration("create_notebook", "edit", EDITS),
    ToolDeclaration("open_notebook", "read", READS),
    ToolDeclaration("read_notebook", "read", READS),
    ToolDeclaration("read_cell", "read", READS),
    ToolDeclaration("insert_cell", "edit", EDITS),
    ToolDeclaration("overwrite_cell", "edit", DESTROYS),
    ToolDeclaration("edit_cell", "edit", DESTROYS),
    ToolDeclaration("delete_cells", "edit", DESTROYS),
    ToolDeclaration("move_cell", "edit", EDITS),
    ToolDeclaration("clear_outputs", "edit", DESTROYS),
    ToolDeclaration("execute_cell", "execute", RUNS_CODE),
    ToolDeclaration("insert_and_execute", "execute", RUNS_CODE),
    ToolDeclaration("execute_code", "execute", RUNS_CODE),
    ToolDeclaration("get_execution", "read", READS),
    ToolDeclaration("list_kernels", "read", READS),
    ToolDeclaration("interrupt_kernel", "execute", RUNS_CODE),
    # Restarting loses all kernel state: destructive, but it runs no code of the agent's.
    ToolDeclaration("restart_kernel", "execute", DESTROYS),
)


def names_in(tier: Tier) -> frozenset[str]:
    return frozenset(t.name for t in TOOLS if t.tier == tier)
