"""The execution lifecycle: run code in a kernel, own the run to its end, answer within a budget.

A tool call starts a run and waits for it at most ``return_after`` seconds (clients time out at
60 s); a driver task owns the run to its end regardless: it times the run out from when the
kernel started on it (not while it is queued behind someone else's code), interrupts it, and
saves its outputs into its notebook cell, while it runs too in a collaboration room. A cancelled
call interrupts its own running code, never code it was queued behind. Later calls follow a run
by id (``get_execution``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .. import metrics
from ..outputs import leave_out_big_images
from .cells import resolve
from .documents import Notebooks
from .errors import JupyterError
from .kernels import Execution, Kernels

log = logging.getLogger(__name__)

# Answer before common client request timeouts (60 s); the cell keeps running and
# get_execution picks it up.
RETURN_AFTER = 50.0
# A Python kernel stops within milliseconds of an interrupt (seconds on a loaded machine); one still
# running after this ignores or blocks SIGINT, and the call's answer says so rather than wait on.
INTERRUPT_GRACE = 10.0
LIVE_SAVE_EVERY = 1.0  # s between saves of a running cell's outputs into a collaborative notebook
UNSTOPPED_WAKE_EVERY = 60.0  # s between wake-ups of the driver of a run its interrupt did not stop

Progress = Callable[[Execution], Awaitable[None]]


class Executor:
    """Runs code in kernels for tool calls, and keeps driving each run after its call returned."""

    def __init__(self, kernels: Kernels, notebooks: Notebooks) -> None:
        self.kernels = kernels
        self.notebooks = notebooks
        self.return_after = RETURN_AFTER
        # Images over this are left out of a run's kept outputs once saved: no answer returns them.
        self.keep_image_bytes: int | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()

    async def run(
        self,
        code: str,
        timeout: float,  # noqa: ASYNC109
        *,
        path: str | None,
        cell_id: str | None,
        kernel_id: str | None = None,
        on_progress: Progress | None = None,
    ) -> Execution:
        """Run ``code`` in ``kernel_id`` (default: the kernel of notebook ``path``), its outputs
        saved into cell ``cell_id`` of ``path`` if given. Returns once it ended, or when this
        call's budget is spent (still queued or running: follow it by its id)."""
        kernel_id = kernel_id or await self.kernels.kernel_for(path)  # type: ignore[arg-type]
        execution = await self.kernels.start(kernel_id, code, path=path, cell_id=cell_id)
        # The driver owns the execution to its end (timeout, interrupt, saving outputs), even
        # after this call returned early or the client went away.
        task = asyncio.create_task(self._drive(execution, timeout))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        try:
            # Queued behind another execution (another session's, or JupyterLab's) until `timeout`
            # at most: then the answer says so; the driver interrupts nothing that is not ours.
            queue_limit = min(timeout, self.return_after)
            if await self.kernels.wait_started(execution, queue_limit, on_progress=on_progress):
                # Until it ends, or the driver's verdict that its timeout's interrupt did not stop
                # it: the driver reaches one of them by the timeout + INTERRUPT_GRACE.
                budget = self.return_after - execution.elapsed
                await self.kernels.wait(
                    execution, max(0.0, budget), on_progress=on_progress, until_settled=True
                )
            if execution.done.is_set():
                await execution.saved.wait()
        except asyncio.CancelledError:
            # The client cancelled: stop the kernel too, rather than let the cell run on unseen;
            # but never while it is still queued, as the kernel then runs someone else's code.
            if execution.status == "running":
                await asyncio.shield(self._interrupt_quietly(kernel_id))
            raise
        return execution

    def find(self, execution_id: str) -> Execution:
        execution = self.kernels.executions.get(execution_id)
        if execution is None:
            raise JupyterError(f"no execution {execution_id!r} here (unknown, or too old to be kept)")
        return execution

    async def follow(self, execution: Execution, wait: float, *, on_progress: Progress | None = None) -> None:
        """Wait up to ``wait`` s (within this call's budget) for a run that outlived its call;
        once it ended, until its outputs are saved."""
        await self.kernels.wait(execution, max(0.0, min(wait, self.return_after)), on_progress=on_progress)
        if execution.done.is_set():
            await execution.saved.wait()

    async def _drive(self, execution: Execution, timeout: float) -> None:  # noqa: ASYNC109
        """Own one execution to its end: timeout and interrupt, outputs into the cell.

        In a collaboration room outputs also go into the cell while it runs (at most once a
        second), so an open JupyterLab tab watches a long cell progress.
        """
        try:
            # The clock starts when the kernel starts on this request, not when it was sent: one
            # queued behind another session's long cell must not time out and interrupt that cell.
            # While queued, the kernel is re-checked: one gone without a word fails the execution.
            await self.kernels.watch(execution)
            live = bool(execution.path and execution.cell_id) and await self.notebooks.collaborative()
            deadline = (execution.began or time.monotonic()) + timeout
            last_saved, saved_version = 0.0, 0
            overdue = False
            while not execution.done.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 and not overdue:
                    overdue = True
                    await self._stop_overdue(execution, timeout)
                    continue
                if overdue:
                    # The interrupt did not stop it: it runs on until it ends or the kernel is
                    # restarted, its outputs still saved.
                    remaining = UNSTOPPED_WAKE_EVERY
                # Compare versions, not wake-ups: output may have arrived before this loop began.
                behind = execution.version != saved_version
                due = time.monotonic() - last_saved >= LIVE_SAVE_EVERY
                if live and behind and due:
                    saved_version = execution.version
                    await self._save_outputs(execution)
                    last_saved = time.monotonic()
                    continue
                await execution.next_change(min(remaining, LIVE_SAVE_EVERY) if live else remaining)
            if execution.path and execution.cell_id:
                await self._save_outputs(execution)
        finally:
            metrics.record_execution(execution.status)
            if execution.done.is_set() and self.keep_image_bytes is not None:
                execution.state.outputs = leave_out_big_images(execution.outputs, self.keep_image_bytes)
            execution.saved.set()

    async def _stop_overdue(self, execution: Execution, limit: float) -> None:
        execution.time_out(limit)
        await self._interrupt_quietly(execution.kernel_id)
        try:
            await asyncio.wait_for(execution.done.wait(), INTERRUPT_GRACE)
        except TimeoutError:
            execution.interrupt_ignored(INTERRUPT_GRACE)

    async def _interrupt_quietly(self, kernel_id: str) -> None:
        try:
            await self.kernels.interrupt(kernel_id)
        except JupyterError:
            pass  # the kernel is gone; the execution reports that itself

    async def _save_outputs(self, execution: Execution) -> None:
        assert execution.path and execution.cell_id
        try:
            async with self.notebooks.edit(execution.path) as cells:
                index = resolve(cells, execution.cell_id, execution.path)
                cells.set_outputs(index, execution.outputs, execution.execution_count)
        except JupyterError as exc:
            execution.save_error = f"outputs not saved into the notebook: {exc}"
        except Exception as exc:  # never lose outputs silently: say so in the answer, log the cause
            log.exception("saving outputs of %s into %s failed", execution.cell_id, execution.path)
            execution.save_error = f"outputs not saved into the notebook: {exc!r}"


def timeout_reason(execution: Execution, timeout: float) -> str | None:
    """Why the call that started ``execution`` with ``timeout`` counts as a timeout, if it does:
    its own timeout ran out (the answer itself is a normal one). Not for get_execution reads of
    the same run, and a run still queued at the early return with time left is not one yet."""
    if execution.interrupt_ignored_for is not None:
        return (
            f"timed out after {execution.interrupted_after:g} s; the interrupt did not stop it "
            f"within {execution.interrupt_ignored_for:g} s"
        )
    if execution.interrupted_after is not None:
        return f"timed out after {execution.interrupted_after:g} s; kernel interrupted"
    if execution.status == "queued" and execution.elapsed >= timeout:
        return f"queued behind other code for {execution.elapsed:.0f} s; nothing interrupted"
    return None
