"""Kernel messages as transitions of one execution (mcp_sidecar.jupyter.transitions): pure."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_sidecar.jupyter.transitions import (
    ExecutionState,
    Step,
    kernel_death,
    msg_type,
    parent_id,
    reply_status,
)

MINE = "req-1"


def iopub(kind: str, parent: str = MINE, **content: Any) -> dict[str, Any]:
    return {
        "channel": "iopub",
        "header": {"msg_type": kind, "msg_id": f"{kind}-{parent}"},
        "parent_header": {"msg_id": parent} if parent else {},
        "content": content,
    }


def reply(status: str = "ok", parent: str = MINE, count: int | None = 3) -> dict[str, Any]:
    message = iopub("execute_reply", parent, status=status, execution_count=count)
    message["channel"] = "shell"
    return message


def busy(parent: str = MINE) -> dict[str, Any]:
    return iopub("status", parent, execution_state="busy")


def idle(parent: str = MINE) -> dict[str, Any]:
    return iopub("status", parent, execution_state="idle")


def out(text: str, name: str = "stdout") -> dict[str, Any]:
    return iopub("stream", name=name, text=text)


def run(*messages: dict[str, Any]) -> ExecutionState:
    state = ExecutionState(MINE)
    for message in messages:
        state.apply(message)
    return state


def test_a_new_execution_is_queued_until_the_kernel_names_it() -> None:
    state = ExecutionState(MINE)
    assert state.status == "queued"
    assert not state.began and not state.finished and state.outputs == []


def test_the_first_message_for_it_starts_it_and_says_so_once() -> None:
    state = ExecutionState(MINE)
    assert state.apply(busy()) == Step(began=True)
    assert state.status == "running"
    assert state.apply(iopub("execute_input", code="1", execution_count=7)) == Step()
    assert state.execution_count == 7
    assert state.status == "running"


def test_any_first_message_starts_it_not_only_busy() -> None:
    state = ExecutionState(MINE)
    assert state.apply(out("hi")) == Step(began=True, changed=True)
    assert state.status == "running"


def test_messages_for_another_request_are_ignored() -> None:
    state = ExecutionState(MINE)
    others = [
        busy("other"),
        out("theirs") | {"parent_header": {"msg_id": "other"}},
        iopub("clear_output", "other", wait=False),
        iopub("error", "other", ename="E", evalue="x", traceback=[]),
        reply("error", "other"),
        idle("other"),
        iopub("stream", "", name="stdout", text="no parent"),
    ]
    for message in others:
        assert state.apply(message) == Step()
    assert state.status == "queued"
    assert state.outputs == [] and state.reply is None and state.execution_count is None


def test_other_requests_leave_a_running_execution_alone() -> None:
    state = run(busy(), out("mine\n"))
    state.apply(iopub("stream", "other", name="stdout", text="theirs\n"))
    state.apply(idle("other"))
    state.apply(reply("ok", "other"))
    assert state.status == "running"
    assert state.outputs == [{"output_type": "stream", "name": "stdout", "text": "mine\n"}]


def test_ok_needs_both_the_reply_and_idle_in_either_order() -> None:
    reply_first = ExecutionState(MINE)
    reply_first.apply(busy())
    assert reply_first.apply(reply("ok")) == Step()
    assert reply_first.status == "running"
    assert reply_first.apply(idle()) == Step(finished=True)
    assert reply_first.status == "ok"
    assert reply_first.execution_count == 3

    idle_first = ExecutionState(MINE)
    idle_first.apply(busy())
    assert idle_first.apply(idle()) == Step()
    assert idle_first.status == "running"
    assert idle_first.apply(reply("ok")) == Step(finished=True)
    assert idle_first.status == "ok"


def test_an_execute_reply_on_iopub_is_not_the_reply() -> None:
    state = run(busy(), idle())
    state.apply(reply("ok") | {"channel": "iopub"})
    assert state.status == "running" and state.reply is None


def test_a_reply_without_a_count_keeps_the_count_from_execute_input() -> None:
    state = run(busy(), iopub("execute_input", execution_count=5), reply("ok", count=None), idle())
    assert state.execution_count == 5


def test_streams_merge_and_outputs_append_in_order() -> None:
    state = run(
        busy(),
        out("a"),
        out("b\n"),
        out("oops\n", "stderr"),
        iopub("display_data", data={"text/plain": "shown"}, metadata={}),
        iopub("execute_result", data={"text/plain": "42"}, metadata={}, execution_count=3),
        reply("ok"),
        idle(),
    )
    assert state.status == "ok"
    assert [o["output_type"] for o in state.outputs] == ["stream", "stream", "display_data", "execute_result"]
    assert state.outputs[0]["text"] == "ab\n"
    assert state.outputs[1] == {"output_type": "stream", "name": "stderr", "text": "oops\n"}
    assert state.outputs[3]["data"] == {"text/plain": "42"}


def test_update_display_data_is_an_output_and_unknown_messages_change_nothing() -> None:
    state = run(busy())
    assert state.apply(iopub("update_display_data", data={"text/plain": "v2"}, metadata={})).changed
    assert state.apply(iopub("comm_msg", data={})) == Step()
    assert state.outputs == [{"output_type": "display_data", "data": {"text/plain": "v2"}, "metadata": {}}]


def test_an_error_output_and_an_error_reply_end_as_error() -> None:
    state = run(busy(), out("before\n"))
    error = iopub("error", ename="ZeroDivisionError", evalue="division by zero", traceback=["tb"])
    assert state.apply(error) == Step(changed=True)
    state.apply(reply("error"))
    state.apply(idle())
    assert state.status == "error"
    assert state.outputs[-1] == {
        "output_type": "error",
        "ename": "ZeroDivisionError",
        "evalue": "division by zero",
        "traceback": ["tb"],
    }


def test_an_aborted_reply_ends_as_aborted_with_nothing_run() -> None:
    state = run(busy(), reply("aborted", count=None), idle())
    assert state.status == "aborted"
    assert state.outputs == [] and state.execution_count is None


@pytest.mark.parametrize(
    ("given", "status"),
    [({"status": "ok"}, "ok"), ({"status": "error"}, "error"), ({"status": "aborted"}, "aborted"),
     ({"status": "abort"}, "aborted"), ({}, "ok"), ({"status": "weird"}, "error")],
)  # fmt: skip
def test_reply_status(given: dict[str, Any], status: str) -> None:
    assert reply_status(given) == status


@pytest.mark.parametrize("wait", [False, True])
def test_clear_output_clears_at_once_with_or_without_wait(wait: bool) -> None:
    """wait=True (a progress display redrawing itself) clears at once too, so no answer or live
    save shows output the cell has already replaced; the next output is then all there is."""
    state = run(busy(), out("10%\n"), iopub("display_data", data={"text/plain": "bar"}, metadata={}))
    assert state.apply(iopub("clear_output", wait=wait)) == Step(changed=True)
    assert state.outputs == []
    state.apply(out("20%\n"))
    assert state.outputs == [{"output_type": "stream", "name": "stdout", "text": "20%\n"}]
    state.apply(reply("ok"))
    state.apply(idle())
    assert state.status == "ok"
    assert state.outputs == [{"output_type": "stream", "name": "stdout", "text": "20%\n"}]


def test_clear_output_as_the_last_word_leaves_no_output() -> None:
    state = run(busy(), out("x\n"), iopub("clear_output", wait=True), reply("ok"), idle())
    assert state.status == "ok" and state.outputs == []


def test_a_timeout_interrupt_ends_as_timeout_when_the_kernel_answers() -> None:
    state = run(busy(), out("working\n"))
    state.time_out(5.0)
    assert state.status == "running"  # interrupted, not finished yet
    state.apply(iopub("error", ename="KeyboardInterrupt", evalue="", traceback=[]))
    state.apply(reply("error"))
    assert state.apply(idle()) == Step(finished=True)
    assert state.status == "timeout"
    assert state.interrupted_after == 5.0
    assert [o["output_type"] for o in state.outputs] == ["stream", "error"]


def test_a_timeout_after_the_end_changes_nothing() -> None:
    state = run(busy(), reply("ok"), idle())
    state.time_out(5.0)
    assert state.status == "ok" and state.interrupted_after is None


@pytest.mark.parametrize("began", [False, True])
def test_losing_the_kernel_ends_it_as_kernel_lost(began: bool) -> None:
    state = run(busy(), out("partial\n")) if began else ExecutionState(MINE)
    assert state.lose("kernel k died while this was running") == Step(finished=True)
    assert state.status == "kernel-lost"
    assert state.failure == "kernel k died while this was running"
    assert state.outputs == (
        [{"output_type": "stream", "name": "stdout", "text": "partial\n"}] if began else []
    )


def test_kernel_lost_wins_over_timeout() -> None:
    state = run(busy())
    state.time_out(1.0)
    state.lose("did not stop within 10 s of the interrupt")
    assert state.status == "kernel-lost"


def test_nothing_changes_a_finished_execution() -> None:
    state = run(busy(), out("done\n"), reply("ok"), idle())
    for message in (out("late\n"), iopub("clear_output", wait=False), reply("error"), busy()):
        assert state.apply(message) == Step()
    assert state.lose("too late") == Step()
    assert state.status == "ok" and state.failure is None
    assert state.outputs == [{"output_type": "stream", "name": "stdout", "text": "done\n"}]

    lost = ExecutionState(MINE)
    lost.lose("gone")
    assert lost.apply(busy()) == Step()
    assert lost.status == "kernel-lost" and not lost.began


@pytest.mark.parametrize(
    ("state", "death"),
    [("restarting", "restarting"), ("dead", "dead"), ("busy", None), ("idle", None), ("starting", None)],
)
def test_kernel_death_is_read_from_any_status_message(state: str, death: str | None) -> None:
    assert kernel_death(iopub("status", "", execution_state=state)) == death
    assert kernel_death(iopub("status", "someone-else", execution_state=state)) == death


def test_kernel_death_needs_a_status_message() -> None:
    assert kernel_death(iopub("stream", name="stdout", text="dead")) is None
    assert kernel_death({"content": {"execution_state": "dead"}}) is None


def test_message_type_and_parent_from_header_or_top_level() -> None:
    assert msg_type({"msg_type": "stream"}) == "stream"
    assert msg_type({"header": {"msg_type": "status"}}) == "status"
    assert msg_type({}) == ""
    assert parent_id({"parent_header": {"msg_id": "abc"}}) == "abc"
    assert parent_id({"parent_header": {}}) == "" and parent_id({}) == ""


# -- the shell: kernels.py routes each message to its execution and acts on the step -------------


async def test_the_connection_routes_by_parent_and_acts_on_each_step() -> None:
    from mcp_sidecar.jupyter.kernels import Execution, KernelConnection

    connection = KernelConnection(server=None, kernel_id="k")  # type: ignore[arg-type]
    mine, theirs = Execution(id=MINE, kernel_id="k", code="1"), Execution(id="req-2", kernel_id="k", code="2")
    connection._running = {MINE: mine, "req-2": theirs}
    connection._dispatch(busy())
    assert mine.acknowledged.is_set() and mine.began is not None and not theirs.acknowledged.is_set()
    connection._dispatch(out("hi\n"))
    assert mine.version == 1 and mine.outputs[0]["text"] == "hi\n"
    connection._dispatch(reply("ok"))
    connection._dispatch(idle())
    assert mine.done.is_set() and mine.status == "ok" and mine.finished_at is not None
    assert list(connection._running) == ["req-2"]  # a finished execution is no longer routed to

    connection._dispatch(iopub("status", "", execution_state="restarting"))
    assert theirs.status == "kernel-lost" and "Jupyter restarted it" in (theirs.failure or "")
    assert connection._running == {} and connection.lost is None  # restarted: still usable
    connection._dispatch(iopub("status", "", execution_state="dead"))
    assert connection.lost == "the kernel is dead and Jupyter could not restart it"
