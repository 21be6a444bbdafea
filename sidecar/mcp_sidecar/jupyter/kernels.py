"""Kernels: one persistent websocket per kernel, event-driven execution, and the truth about them.

Every iopub/shell message is dispatched by its parent ``msg_id`` to the ``Execution`` that sent
the request; an execution is finished the moment the kernel reports idle and the reply is in.
Nothing polls. A kernel that died, restarted or vanished is reported as such; a fresh kernel is
started only for a notebook that never had one here, or by an explicit restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from .documents import Notebooks
from .errors import JupyterError
from .paths import kernel_url, require_kernel_id
from .server import JupyterServer
from .transitions import ExecutionState, Status, Step, kernel_death, parent_id

log = logging.getLogger(__name__)

RESTART_HINT = "call restart_kernel to start a fresh one; state is lost"
MAX_KEPT_EXECUTIONS = 32  # for get_execution; bounded because each may hold megabytes of output
ACK_TIMEOUT = 3.0  # a live kernel answers "busy" within milliseconds, even on a loaded machine
QUEUED_CHECK_EVERY = 10.0  # s between checks that the kernel of a queued execution still exists


@dataclass
class Execution:
    """One execute request: its state (``transitions.ExecutionState``), when things happened, and
    the events waiters wait on."""

    id: str
    kernel_id: str
    code: str
    path: str | None = None
    cell_id: str | None = None
    state: ExecutionState = field(init=False)
    started: float = field(default_factory=time.monotonic)  # sent
    began: float | None = None  # the kernel started on it (a kernel runs one request at a time)
    finished_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # The kernel started on this request (its first message for it), or the execution ended.
    acknowledged: asyncio.Event = field(default_factory=asyncio.Event)
    # What the call that started it waits for: the end, or the verdict that the interrupt sent
    # for its timeout did not stop it (then the answer says so instead of "still running").
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    version: int = 0  # counts changes, so a saver knows whether it is behind
    # Resolved (and replaced) on every change: any number of waiters, nobody clears anything.
    _pulse: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # Set by whoever writes the outputs back into the notebook, so waiters see the saved state.
    saved: asyncio.Event = field(default_factory=asyncio.Event)
    save_error: str | None = None

    def __post_init__(self) -> None:
        self.state = ExecutionState(self.id)

    @property
    def status(self) -> Status:
        return self.state.status

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.state.outputs

    @property
    def execution_count(self) -> int | None:
        return self.state.execution_count

    @property
    def failure(self) -> str | None:
        return self.state.failure  # the kernel died / vanished while running

    @property
    def interrupted_after(self) -> float | None:
        return self.state.interrupted_after  # set when a timeout interrupted it

    @property
    def interrupt_ignored_for(self) -> float | None:
        return self.state.interrupt_ignored_for  # the interrupt did not stop it within this many s

    @property
    def elapsed(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started

    def changed(self) -> None:
        self.version += 1
        pulse, self._pulse = self._pulse, asyncio.get_running_loop().create_future()
        pulse.set_result(None)

    async def next_change(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` s for new output or the end; True if something changed."""
        if self.done.is_set():
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._pulse), timeout)
        except TimeoutError:
            return False
        return True

    def apply(self, msg: dict[str, Any]) -> None:
        """One kernel message for this request: the transition, then its timestamps and events."""
        self._took(self.state.apply(msg))

    def fail(self, reason: str) -> None:
        self._took(self.state.lose(reason))

    def time_out(self, after: float) -> None:
        self.state.time_out(after)

    def interrupt_ignored(self, grace: float) -> None:
        """The timeout's interrupt did not stop it within ``grace`` s: it runs on, and whoever
        waits for the call's answer gets that verdict now."""
        if self.state.interrupt_ignored(grace):
            self.settled.set()
            self.changed()

    def _took(self, step: Step) -> None:
        if step.began and self.began is None:
            self.began = time.monotonic()
            self.acknowledged.set()
        if step.changed:
            self.changed()
        if step.finished:
            self.finished_at = time.monotonic()
            self.done.set()
            self.settled.set()
            self.acknowledged.set()  # whoever waits for the start must not outlive the end
            self.changed()


class KernelConnection:
    """The one websocket to one kernel, shared by every execution on it."""

    def __init__(self, server: JupyterServer, kernel_id: str) -> None:
        self.server = server
        self.kernel_id = kernel_id
        self.session = uuid.uuid4().hex
        self.lost: str | None = None  # why this connection can no longer be used
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._running: dict[str, Execution] = {}

    async def open(self) -> None:
        url = self.server.ws_url(kernel_url(self.kernel_id, "channels", query={"session_id": self.session}))
        try:
            self._ws = await websockets.connect(
                url, additional_headers=self.server.auth_headers, max_size=None, open_timeout=30
            )
        except (OSError, websockets.WebSocketException) as exc:
            raise JupyterError(f"cannot connect to kernel {self.kernel_id}: {exc}") from exc
        self._reader = asyncio.create_task(self._read(), name=f"kernel-reader:{self.kernel_id}")
        _ack_now(self._ws)

    async def execute(self, code: str, *, path: str | None = None, cell_id: str | None = None) -> Execution:
        if self.lost or self._ws is None:
            raise JupyterError(f"kernel {self.kernel_id} is not connected ({self.lost}); {RESTART_HINT}")
        msg_id = uuid.uuid4().hex
        execution = Execution(id=msg_id, kernel_id=self.kernel_id, code=code, path=path, cell_id=cell_id)
        self._running[msg_id] = execution
        message = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "session": self.session,
                "username": "mcp",
                "date": datetime.now(UTC).isoformat(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                # Each tool call stands alone: an error here must not abort requests queued after it.
                "stop_on_error": False,
            },
            "channel": "shell",
            "buffers": [],
        }
        try:
            await self._ws.send(json.dumps(message))
        except websockets.ConnectionClosed as exc:
            self._running.pop(msg_id, None)
            raise JupyterError(f"kernel {self.kernel_id} connection closed; {RESTART_HINT}") from exc
        return execution

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                _ack_now(self._ws)
                message = json.loads(raw)
                del raw  # a 50 MB image arrives as one frame: not held twice until the next one
                self._dispatch(message)
                del message
        except websockets.ConnectionClosed:
            pass
        except Exception:  # never die silently: in-flight executions must learn what happened
            log.exception("kernel %s reader failed", self.kernel_id)
        finally:
            self.lost = self.lost or "the Jupyter server closed the kernel connection"
            self._fail_all(
                f"kernel {self.kernel_id} went away while this was running (shut down, culled or died); "
                f"{RESTART_HINT}"
            )

    def _dispatch(self, msg: dict[str, Any]) -> None:
        death = kernel_death(msg)
        if death is not None:
            if death == "dead":
                self.lost = "the kernel is dead and Jupyter could not restart it"
            self._fail_all(
                f"kernel {self.kernel_id} died while this was running"
                + (
                    " and Jupyter restarted it: all variables and imports are lost"
                    if death == "restarting"
                    else f" and could not be restarted; {RESTART_HINT}"
                )
            )
            return
        execution = self._running.get(parent_id(msg))
        if execution is None:
            return
        execution.apply(msg)
        if execution.done.is_set():
            self._running.pop(execution.id, None)

    def _fail_all(self, reason: str) -> None:
        running, self._running = self._running, {}
        for execution in running.values():
            execution.fail(reason)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def _ack_now(ws: ClientConnection) -> None:
    """Acknowledge received data at once instead of up to 40 ms later (Linux delayed ACK).

    jupyter_server writes kernel messages without TCP_NODELAY, so after the first small frame
    of a reply Nagle holds the rest until our ACK: with delayed ACKs every execution would cost
    ~40 ms extra. Setting TCP_QUICKACK sends any pending ACK now; it is re-armed per message.
    """
    sock = ws.transport.get_extra_info("socket") if ws.transport else None
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _session_path(session: dict[str, Any]) -> str:
    return session.get("path") or (session.get("notebook") or {}).get("path", "")


class Kernels:
    """Which kernel serves which notebook, the connections to them, and recent executions."""

    def __init__(self, server: JupyterServer, notebooks: Notebooks | None = None) -> None:
        self.server = server
        self.notebooks = notebooks  # for notebook metadata from an open collaboration room
        self._connections: dict[str, KernelConnection] = {}
        self._connect_locks: dict[str, asyncio.Lock] = {}
        self._path_locks: dict[str, asyncio.Lock] = {}
        # The kernel this sidecar last used for each notebook: if it disappears, we say so
        # instead of quietly starting another one and pretending the state survived.
        self._known: dict[str, str] = {}
        self.executions: OrderedDict[str, Execution] = OrderedDict()
        self.queued_check_every = QUEUED_CHECK_EVERY

    async def kernel_for(self, path: str) -> str:
        """The kernel of ``path``'s session (the one JupyterLab shows), started if it never had one."""
        async with self._path_locks.setdefault(path, asyncio.Lock()):
            kernel_id = await self._current(path)
            if kernel_id is not None:
                return kernel_id
            created = await self.server.create_session(path, await self._kernel_name(path))
            self._known[path] = created["kernel"]["id"]
            return created["kernel"]["id"]

    async def running_kernel(self, path: str) -> str:
        """The kernel serving ``path`` right now; never starts one (e.g. to interrupt it)."""
        async with self._path_locks.setdefault(path, asyncio.Lock()):
            kernel_id = await self._current(path)
        if kernel_id is None:
            await self._notebook(path)  # a missing notebook says so, rather than "no kernel"
            raise JupyterError(f"{path!r} has no running kernel (nothing runs there)")
        return kernel_id

    async def _current(self, path: str) -> str | None:
        """The kernel of ``path``'s session, None if it never had one here; errors if it was lost."""
        connection = self._connections.get(self._known.get(path) or "")
        if connection is not None and not connection.lost:
            # Our live connection to that kernel is the proof it still serves this notebook:
            # shutting it down, culling it or switching the notebook's kernel closes it.
            return connection.kernel_id
        session = await self._session(path)
        if session is not None:
            kernel = session.get("kernel") or {}
            if kernel.get("execution_state") == "dead":
                raise JupyterError(f"kernel {kernel.get('id')} of {path!r} is dead; {RESTART_HINT}")
            self._known[path] = kernel["id"]
            return kernel["id"]
        if path in self._known:
            raise JupyterError(
                f"kernel {self._known[path]} of {path!r} is gone (shut down, culled or died); " + RESTART_HINT
            )
        return None

    async def _notebook(self, path: str) -> dict[str, Any]:
        model = await self.server.get_contents(
            path,
            what=f"reading {path!r}",
            missing=f"no such notebook: {path!r} does not exist on the Jupyter server "
            "(create_notebook makes one); no kernel was started",
        )
        if model.get("type") != "notebook":
            raise JupyterError(f"{path!r} is a {model.get('type')}, not a notebook")
        return model

    async def _kernel_name(self, path: str) -> str | None:
        """The kernel the notebook asks for (metadata.kernelspec.name); None = the server's default.

        Also the existence check: POST /api/sessions starts a kernel for any path, even a typo.
        From the notebook's room when one is open here (the room exists only for an existing
        notebook, and the file it rewrites in place may be mid-save), else from the file."""
        metadata = self.notebooks.open_room_metadata(path) if self.notebooks else None
        if metadata is None:
            metadata = ((await self._notebook(path)).get("content") or {}).get("metadata") or {}
        spec = metadata.get("kernelspec")
        name = spec.get("name") if isinstance(spec, dict) else None
        return name if isinstance(name, str) and name else None

    async def _session(self, path: str) -> dict[str, Any] | None:
        return next((s for s in await self.server.list_sessions() if _session_path(s) == path), None)

    async def connection(self, kernel_id: str) -> KernelConnection:
        require_kernel_id(kernel_id)  # before a lock is kept for it: garbage ids must not pile up
        connection = self._connections.get(kernel_id)
        if connection is not None and not connection.lost:
            return connection
        async with self._connect_locks.setdefault(kernel_id, asyncio.Lock()):
            connection = self._connections.get(kernel_id)
            if connection is None or connection.lost:
                if await self.server.get_kernel(kernel_id) is None:
                    raise JupyterError(
                        f"kernel {kernel_id} does not exist (shut down or culled); {RESTART_HINT}"
                    )
                connection = KernelConnection(self.server, kernel_id)
                await connection.open()
                self._connections[kernel_id] = connection
        return connection

    async def start(
        self, kernel_id: str, code: str, *, path: str | None = None, cell_id: str | None = None
    ) -> Execution:
        connection = await self.connection(kernel_id)
        execution = await connection.execute(code, path=path, cell_id=cell_id)
        self.executions[execution.id] = execution
        while len(self.executions) > MAX_KEPT_EXECUTIONS:
            self.executions.popitem(last=False)
        return execution

    async def wait(
        self,
        execution: Execution,
        timeout: float,  # noqa: ASYNC109
        *,
        on_progress: Callable[[Execution], Any] | None = None,
        progress_every: float = 2.0,
        until_settled: bool = False,
    ) -> bool:
        """Wait up to ``timeout`` s for ``execution``; True when it finished (or, ``until_settled``,
        when it finished or its timeout's interrupt was found not to stop it).

        Wakes on every new output (to report progress) and at least every ``progress_every``
        seconds, so a quiet long cell still shows it is alive. The result is never delayed.
        """
        reached = execution.settled if until_settled else execution.done
        return await _wait_until(
            reached, execution.next_change, execution, timeout, on_progress, progress_every
        )

    async def wait_started(
        self,
        execution: Execution,
        timeout: float,  # noqa: ASYNC109
        *,
        on_progress: Callable[[Execution], Any] | None = None,
        progress_every: float = 2.0,
    ) -> bool:
        """Wait up to ``timeout`` s for the kernel to start on ``execution`` (or for its end).

        False while it still waits in the kernel's queue behind another execution."""

        async def started(within: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(execution.acknowledged.wait(), within)

        return await _wait_until(
            execution.acknowledged, started, execution, timeout, on_progress, progress_every
        )

    async def watch(self, execution: Execution, within: float = ACK_TIMEOUT) -> None:
        """Return once the kernel started on ``execution`` or it ended; fail it if the kernel is gone.

        A kernel shut down or culled behind our back does not always close its websocket, so
        a silent kernel is checked after ``within`` s, and again every ``queued_check_every`` s
        while the request waits in its queue: otherwise a queued execution would wait forever.
        """
        wait = within
        while not execution.acknowledged.is_set():
            try:
                await asyncio.wait_for(execution.acknowledged.wait(), wait)
                return
            except TimeoutError:
                pass
            wait = self.queued_check_every
            if execution.done.is_set() or await self.server.get_kernel(execution.kernel_id) is not None:
                continue  # alive, just busy with earlier work
            connection = self._connections.pop(execution.kernel_id, None)
            if connection is not None:
                connection.lost = "the kernel no longer exists"
                connection._fail_all(
                    f"kernel {execution.kernel_id} is gone (shut down or culled); {RESTART_HINT}"
                )
                await connection.close()
            execution.fail(f"kernel {execution.kernel_id} is gone (shut down or culled); {RESTART_HINT}")

    async def interrupt(self, kernel_id: str) -> None:
        await self.server.interrupt_kernel(kernel_id)

    async def restart(self, kernel_id: str | None, path: str | None) -> tuple[str, str]:
        """Restart the kernel (or start a fresh one for a notebook whose kernel is gone)."""
        if kernel_id is None and path is not None:
            session = await self._session(path)
            if session is None:
                # The notebook's kernel is gone: an explicit restart is the one place a new one starts.
                previous = self._known.pop(path, None)
                new_id = await self.kernel_for(path)
                if previous is None:
                    return new_id, f"{path!r} had no kernel; started kernel {new_id}"
                return new_id, f"the previous kernel {previous} of {path!r} was gone; started kernel {new_id}"
            kernel_id = session["kernel"]["id"]
        assert kernel_id is not None
        old = self._connections.pop(kernel_id, None)
        if old is not None:
            # Before the restart request: Jupyter interrupts the kernel before restarting it, and
            # runs answered by that bare KeyboardInterrupt would not learn their state is gone.
            old.lost = "the kernel was restarted"
            old._fail_all(
                f"kernel {kernel_id} was restarted (restart_kernel, called by another session or caller) "
                "while this ran: the code did not finish, and all variables and imports are lost"
            )
        try:
            await self.server.restart_kernel(kernel_id)
        finally:
            if old is not None:
                await old.close()
        return kernel_id, f"kernel {kernel_id} restarted: all variables and imports are gone"

    async def aclose(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            await connection.close()


async def _wait_until(
    reached: asyncio.Event,
    pause: Callable[[float], Awaitable[Any]],
    execution: Execution,
    timeout: float,  # noqa: ASYNC109
    on_progress: Callable[[Execution], Any] | None,
    progress_every: float,
) -> bool:
    """Until ``reached`` is set (True) or ``timeout`` s pass (False): ``pause`` returns on a change
    or after at most the given seconds, and progress is reported after each pause that did not end
    the wait."""
    deadline = time.monotonic() + timeout
    while not reached.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await pause(min(remaining, progress_every))
        if on_progress is not None and not reached.is_set():
            await on_progress(execution)
    return True
