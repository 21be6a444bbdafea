"""The pure tool policy: mode ceiling, allow list narrows, deny list wins, unknown names warned."""

from __future__ import annotations

import pytest
from mcp_sidecar.toolpolicy import ALL_TOOLS, EDIT_TOOLS, EXECUTE_TOOLS, READ_TOOLS, ToolPolicy, category


def test_categories_are_disjoint_and_cover_every_tool() -> None:
    assert not (READ_TOOLS & EDIT_TOOLS or READ_TOOLS & EXECUTE_TOOLS or EDIT_TOOLS & EXECUTE_TOOLS)
    assert category("read_cell") == "read" and category("move_cell") == "edit"
    assert category("execute_code") == "execute" and category("rm_rf") == "unknown"


def test_every_declared_tool_is_a_tool_method_and_every_tool_method_is_declared() -> None:
    import inspect

    from mcp_sidecar import tools
    from mcp_sidecar.catalog import TOOLS

    declared = {t.name for t in TOOLS}
    assert declared == ALL_TOOLS
    assert len(declared) == len(TOOLS), "a tool is declared twice"
    # A tool method is a public coroutine taking the MCP context first.
    methods = {
        name
        for name, fn in inspect.getmembers(tools.NotebookTools, inspect.iscoroutinefunction)
        if not name.startswith("_") and list(inspect.signature(fn).parameters)[1:2] == ["ctx"]
    }
    assert methods - {"refuse"} == declared


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("read-only", READ_TOOLS), ("edit", READ_TOOLS | EDIT_TOOLS), ("execute", ALL_TOOLS)],
)
def test_mode_sets_the_ceiling(mode: str, expected: frozenset[str]) -> None:
    assert ToolPolicy(mode).allowed() == expected


def test_read_only_refuses_execute_and_edit_with_the_mode_in_the_message() -> None:
    policy = ToolPolicy("read-only")
    assert (
        policy.refusal("execute_code")
        == "tool execute_code is not allowed: the sidecar runs in read-only mode"
    )
    assert "read-only mode" in (policy.refusal("insert_cell") or "")
    assert policy.refusal("read_notebook") is None


def test_allow_list_narrows_but_never_lifts_above_the_mode() -> None:
    policy = ToolPolicy("edit", allow=frozenset({"read_notebook", "insert_cell", "execute_code"}))
    assert policy.allowed() == {"read_notebook", "insert_cell"}
    assert "allow list" in (policy.refusal("list_files") or "")
    assert "edit mode" in (policy.refusal("execute_code") or "")


def test_deny_wins_over_allow() -> None:
    policy = ToolPolicy(
        "execute", allow=frozenset({"execute_code", "read_cell"}), deny=frozenset({"execute_code"})
    )
    assert policy.allowed() == {"read_cell"}
    assert (
        policy.refusal("execute_code") == "tool execute_code is not allowed: it is on this server's deny list"
    )


def test_unknown_tool_is_refused() -> None:
    assert "not a known tool" in (ToolPolicy("execute").refusal("shell") or "")


def test_warnings_name_unknown_tools_and_allows_the_mode_overrides() -> None:
    policy = ToolPolicy(
        "read-only", allow=frozenset({"read_cell", "exec_code", "execute_code"}), deny=frozenset({"rm"})
    )
    warnings = policy.warnings()
    assert any("MCP_ALLOW_TOOLS names unknown tool 'exec_code'" in w for w in warnings)
    assert any("MCP_DENY_TOOLS names unknown tool 'rm'" in w for w in warnings)
    assert any("'execute_code', but read-only mode" in w for w in warnings)
    assert len(warnings) == 3
    assert ToolPolicy("execute", deny=frozenset({"execute_code"})).warnings() == []


def test_bad_mode_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown mode 'readonly'"):
        ToolPolicy("readonly")


def test_token_tier_caps_below_the_mode_and_never_lifts_it() -> None:
    execute = ToolPolicy("execute")
    assert execute.refusal("read_notebook", "read") is None
    refused = execute.refusal("insert_cell", "read") or ""
    assert "custom:mcp:read" in refused and "ask for a token with custom:mcp:edit" in refused
    assert "custom:mcp:execute" in (execute.refusal("execute_code", "edit") or "")
    assert execute.refusal("execute_code", "execute") is None
    assert execute.refusal("execute_code", None) is None  # access:servers: no cap from the token
    # the mode stays the ceiling: an execute token in read-only mode still reads only
    assert "read-only mode" in (ToolPolicy("read-only").refusal("execute_code", "execute") or "")
