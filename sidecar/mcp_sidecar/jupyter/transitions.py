"""What a kernel message does to one execution: a pure state transition, no I/O, no clock.

An execution is ``queued`` until the kernel sends its first message for it (it runs one request
at a time), ``running`` until both the shell reply and the iopub ``idle`` are in, then ``ok``,
``error`` or ``aborted`` as the reply says; ``timeout`` when the driver interrupted it for its
timeout, ``kernel-lost`` when the kernel died, restarted or went away under it. Once finished,
nothing changes it any more.

``kernels.py`` routes messages here and turns each ``Step`` into events and timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..outputs import append_output, output_from_message

Status = Literal["queued", "running", "ok", "error", "aborted", "timeout", "kernel-lost"]
ReplyStatus = Literal["ok", "error", "aborted"]
Death = Literal["restarting", "dead"]  # the kernel states that end every execution on it


def msg_type(msg: Mapping[str, Any]) -> str:
    return str(msg.get("msg_type") or (msg.get("header") or {}).get("msg_type", ""))


def parent_id(msg: Mapping[str, Any]) -> str:
    """The ``msg_id`` of the request a message answers ("" for none)."""
    return str((msg.get("parent_header") or {}).get("msg_id", ""))


def kernel_death(msg: Mapping[str, Any]) -> Death | None:
    """``restarting`` or ``dead`` when ``msg`` says the kernel died, whatever request it names."""
    if msg_type(msg) != "status":
        return None
    state = (msg.get("content") or {}).get("execution_state")
    if state == "restarting":
        return "restarting"
    if state == "dead":
        return "dead"
    return None


def reply_status(content: Mapping[str, Any]) -> ReplyStatus:
    """An ``execute_reply``'s status; ``ok`` when it gives none."""
    status = content.get("status", "ok")
    if status == "ok" or status == "error" or status == "aborted":
        return status
    return "aborted" if status == "abort" else "error"  # "abort": protocol < 5.1


@dataclass(frozen=True)
class Step:
    """What one transition changed, for the shell to act on."""

    began: bool = False  # the kernel started on the request with this message
    changed: bool = False  # the outputs changed
    finished: bool = False  # the execution ended with this message


IGNORED = Step()


@dataclass
class ExecutionState:
    """One execute request as the kernel answered it so far."""

    msg_id: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None
    reply: ReplyStatus | None = None  # the shell execute_reply's status, once in
    began: bool = False  # the kernel sent a message for this request
    idle: bool = False  # the kernel reported idle after this request
    finished: bool = False
    failure: str | None = None  # why the kernel was lost under it
    interrupted_after: float | None = None  # the timeout the driver interrupted it for
    # The interrupt did not stop it within this many seconds (the code ignores or blocks SIGINT):
    # it runs on, and ends whenever it ends (or the kernel is restarted).
    interrupt_ignored_for: float | None = None

    @property
    def status(self) -> Status:
        if self.failure:
            return "kernel-lost"
        if not self.finished:
            return "running" if self.began else "queued"
        if self.interrupted_after is not None:
            return "timeout"
        return self.reply or "ok"

    def apply(self, msg: Mapping[str, Any]) -> Step:
        """The transition for one iopub/shell message; messages for other requests are ignored,
        and so is everything after the end. Kernel deaths are the caller's: see ``kernel_death``."""
        if self.finished or parent_id(msg) != self.msg_id:
            return IGNORED
        began = not self.began
        self.began = True
        kind = msg_type(msg)
        content: Mapping[str, Any] = msg.get("content") or {}
        changed = False
        if msg.get("channel") == "shell" and kind == "execute_reply":
            self.reply = reply_status(content)
            if content.get("execution_count") is not None:
                self.execution_count = content["execution_count"]
        elif kind == "status" and content.get("execution_state") == "idle":
            self.idle = True
        elif kind == "execute_input":
            self.execution_count = content.get("execution_count")
        elif kind == "clear_output":
            # Cleared at once, with or without wait=True: what the agent reads never holds
            # output the cell already replaced.
            self.outputs.clear()
            changed = True
        elif (output := output_from_message(kind, content)) is not None:
            append_output(self.outputs, output)
            changed = True
        finished = self.idle and self.reply is not None
        self.finished = finished
        return Step(began=began, changed=changed, finished=finished)

    def lose(self, reason: str) -> Step:
        """The kernel died, restarted, vanished or stopped answering while this was not finished."""
        if self.finished:
            return IGNORED
        self.failure = reason
        self.finished = True
        return Step(finished=True)

    def time_out(self, after: float) -> None:
        """The driver interrupts the kernel for this request's timeout: it ends as ``timeout``
        when the kernel answers (or ``kernel-lost`` when it does not)."""
        if not self.finished:
            self.interrupted_after = after

    def interrupt_ignored(self, grace: float) -> bool:
        """The interrupt sent for the timeout did not end it within ``grace`` s; True if that is news."""
        if self.finished or self.interrupted_after is None or self.interrupt_ignored_for is not None:
            return False
        self.interrupt_ignored_for = grace
        return True
