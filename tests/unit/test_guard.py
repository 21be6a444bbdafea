"""The guard seam without I/O: policy before the body, one audit line and one metric per call,
exceptions recorded and re-raised unchanged. Plus the pure parts of auth and activity."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime

import pytest
from mcp.types import CallToolResult, TextContent
from mcp_sidecar import metrics
from mcp_sidecar.activity import activity_body
from mcp_sidecar.audit import AuditLog, audit_record
from mcp_sidecar.auth import AuthMiddleware, HubTokenChecker, bearer_token, split_query_token
from mcp_sidecar.config import ConfigError, Settings
from mcp_sidecar.guard import Guard, Identity, ToolCall, ToolRefused, current_call

ALICE = Identity(user="alice", kind="hub", token_id="a7", token_note="agent", scopes=frozenset({"x"}))


def settings(**env: str) -> Settings:
    return Settings.from_env({"MCP_TOKEN": "t", "MCP_AUDIT_LOG": "off", **env})


def guard_with_log(**env: str) -> tuple[Guard, io.StringIO]:
    out = io.StringIO()
    s = settings(**env)
    return Guard(s, audit=AuditLog(out, include_code=s.audit_include_code)), out


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def calls(tool: str, outcome: str) -> float:
    return metrics.TOOL_CALLS.labels(tool=tool, outcome=outcome)._value.get()


async def test_ok_call_is_audited_and_counted() -> None:
    guard, out = guard_with_log()
    before = calls("read_cell", "ok")

    async def body() -> str:
        return "result"

    call = ToolCall("read_cell", identity=ALICE, session_id="s1", path="a.ipynb", cells=["0"], code="x")
    assert await guard.call(call, body) == "result"
    [record] = lines(out)
    assert record["outcome"] == "ok" and record["error"] is None
    assert (record["user"], record["token_id"], record["token_note"]) == ("alice", "a7", "agent")
    assert (record["session"], record["path"], record["cells"]) == ("s1", "a.ipynb", ["0"])
    assert "code" not in record
    assert calls("read_cell", "ok") == before + 1


async def test_exception_is_recorded_and_reraised_unchanged() -> None:
    guard, out = guard_with_log()
    boom = RuntimeError("kernel died")

    async def body() -> None:
        raise boom

    with pytest.raises(RuntimeError) as raised:
        await guard.call(ToolCall("execute_code", code="1/0"), body)
    assert raised.value is boom
    assert lines(out)[0]["outcome"] == "error" and lines(out)[0]["error"] == "kernel died"


async def test_timeout_and_cancellation_outcomes() -> None:
    guard, out = guard_with_log()

    async def slow() -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await guard.call(ToolCall("execute_cell"), slow)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await guard.call(ToolCall("execute_cell"), cancelled)
    assert [(r["outcome"], r["error"]) for r in lines(out)] == [
        ("timeout", "timed out"),
        ("error", "cancelled by the client"),
    ]


async def test_error_result_counts_as_error() -> None:
    guard, out = guard_with_log()

    async def body() -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text="no such cell")], is_error=True)

    await guard.call(ToolCall("read_cell"), body)
    assert (lines(out)[0]["outcome"], lines(out)[0]["error"]) == ("error", "no such cell")


async def test_refused_before_the_body_runs_and_code_only_when_asked() -> None:
    guard, out = guard_with_log(MCP_MODE="edit", MCP_AUDIT_INCLUDE_CODE="1")
    ran = []

    async def body() -> None:
        ran.append(1)

    with pytest.raises(ToolRefused, match="tool execute_code is not allowed: the sidecar runs in edit mode"):
        await guard.call(ToolCall("execute_code", code="import os"), body)
    assert ran == []
    [record] = lines(out)
    assert record["outcome"] == "refused" and record["code"] == "import os"
    assert not guard.is_listed("execute_code") and guard.is_listed("insert_cell")


def test_policy_warnings_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    Guard(settings(MCP_DENY_TOOLS="exec"))
    assert "MCP_DENY_TOOLS names unknown tool 'exec'" in caplog.text


def test_audit_record_timestamp_and_file_errors(tmp_path) -> None:
    record = audit_record(
        ToolCall("list_files"), outcome="ok", duration_ms=1.234, now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert record["ts"] == "2026-01-02T03:04:05.000Z" and record["duration_ms"] == 1.23
    assert record["user"] is None
    with pytest.raises(ConfigError, match="cannot open MCP_AUDIT_LOG"):
        AuditLog.from_settings(settings(MCP_AUDIT_LOG=str(tmp_path / "no" / "such" / "dir" / "a.log")))
    log = AuditLog.from_settings(settings(MCP_AUDIT_LOG=str(tmp_path / "a.log")))
    log.write({"a": 1})
    log.close()
    log.write({"b": 2})  # after close: dropped, never raised into a tool call
    assert (tmp_path / "a.log").read_text() == '{"a":1}\n'


def test_bearer_token_schemes() -> None:
    assert bearer_token({b"authorization": b"Bearer abc"}) == "abc"
    assert bearer_token({b"authorization": b"token  abc "}) == "abc"
    assert bearer_token({b"authorization": b"TOKEN abc"}) == "abc"
    assert bearer_token({b"authorization": b"Basic abc"}) is None
    assert bearer_token({b"authorization": b"Bearer"}) is None
    assert bearer_token({}) is None


def test_split_query_token_removes_every_token_parameter() -> None:
    assert split_query_token(b"token=abc&x=1") == ("abc", b"x=1")
    assert split_query_token(b"x=1&token=abc&token=def") == ("abc", b"x=1")
    assert split_query_token(b"x=1") == (None, b"x=1")
    assert split_query_token(b"token=") == (None, b"")


def test_judge_maps_hub_answers_to_statuses() -> None:
    checker = HubTokenChecker(
        Settings.from_env({"JUPYTERHUB_API_URL": "http://hub/hub/api", "JUPYTERHUB_USER": "alice"})
    )
    assert checker.judge(None).status == 401
    bob = checker.judge({"name": "bob", "scopes": ["access:servers!user=bob"]})
    assert bob.status == 403 and bob.identity is None and "access:servers!server=alice/" in bob.message
    ok = checker.judge({"name": "alice", "token_id": "a1", "scopes": ["access:servers!user=alice"]})
    assert ok.status == 200 and ok.identity is not None
    assert (ok.identity.user, ok.identity.kind, ok.identity.token_id) == ("alice", "hub", "a1")


async def test_static_mode_compares_the_secret() -> None:
    middleware = AuthMiddleware(lambda *a: None, settings())  # type: ignore[arg-type]
    assert (await middleware.verify("t")).status == 200
    assert (await middleware.verify("T")).status == 401
    assert (await middleware.verify(None)).status == 401
    assert middleware.hub is None


def test_activity_body_matches_the_single_user_server() -> None:
    when = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert activity_body("lab", when) == {
        "servers": {"lab": {"last_activity": "2026-05-06T07:08:09.123Z"}},
        "last_activity": "2026-05-06T07:08:09.123Z",
    }


async def test_a_body_adds_what_it_learned_to_the_audit_record() -> None:
    """Resolved cell ids replace the caller's references; a normal answer may still be a timeout."""
    guard, out = guard_with_log()
    before = calls("execute_cell", "timeout")

    async def body() -> CallToolResult:
        call = current_call()
        assert call is not None
        call.cells = ["abc123"]
        call.outcome, call.reason = "timeout", "timed out after 2 s; kernel interrupted"
        return CallToolResult(content=[TextContent(type="text", text="partial output")])

    await guard.call(ToolCall("execute_cell", cells=["0"]), body)
    [record] = lines(out)
    assert (record["outcome"], record["error"], record["cells"]) == (
        "timeout",
        "timed out after 2 s; kernel interrupted",
        ["abc123"],
    )
    assert calls("execute_cell", "timeout") == before + 1
    assert current_call() is None  # nothing leaks past the call
