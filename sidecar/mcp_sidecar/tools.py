"""The notebook tools, adapters only: validate the arguments, call the domain code, render the answer.

The domain code is ``jupyter/`` (cells, documents, kernels, and runs in ``jupyter/execution.py``);
answers are rendered by ``answers.py`` from outputs shaped by ``outputs.py``. Every tool names its
notebook by ``path`` (``open_notebook`` only sets a default for the calling MCP session), runs its
body through ``Guard.call`` (policy, audit, metrics live there), and turns ``JupyterError`` into a
tool error the agent can read.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult

from . import answers, metrics
from .catalog import TOOLS
from .config import Settings
from .guard import Guard, Identity, ToolCall, ToolRefused, current_call
from .jupyter.cells import empty_notebook, insertion_index, move, new_cell, resolve, source_text
from .jupyter.documents import Notebooks
from .jupyter.errors import JupyterError
from .jupyter.execution import Executor, Progress, timeout_reason
from .jupyter.kernels import Execution, Kernels
from .jupyter.paths import normalize_path, require_notebook
from .jupyter.server import JupyterServer
from .outputs import Shaped, shape
from .sessions import SessionDefaults

T = TypeVar("T")
CellRef = int | str

MAX_LIST_DEPTH = 6  # each level is one request per folder: keep a listing from walking a whole disk


def _identity(ctx: Context) -> Identity | None:
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state") or {}
    return state.get("identity")


def _session_id(ctx: Context) -> str | None:
    headers = ctx.headers or {}
    return headers.get("mcp-session-id")


def _audit_cells(*cell_ids: str) -> None:
    """Audit the cell ids a call resolved to or created, not the caller's references ("0", "-1").

    A cell without an id (an nbformat 4.4 notebook read without edits) keeps the reference."""
    call = current_call()
    if call is not None and all(cell_ids):
        call.cells = list(cell_ids)


class NotebookTools:
    """All notebook tools of one sidecar, and the connections they share."""

    def __init__(self, settings: Settings, guard: Guard, server: JupyterServer | None = None) -> None:
        self.settings = settings
        self.guard = guard
        self.server = server or JupyterServer(settings.jupyter_base_url, settings.jupyter_token)
        self.notebooks = Notebooks(self.server)
        self.kernels = Kernels(self.server, self.notebooks)
        self.executor = Executor(self.kernels, self.notebooks)
        self.executor.keep_image_bytes = settings.output_max_image_bytes
        self.sessions = SessionDefaults()

    async def aclose(self) -> None:
        await self.executor.aclose()
        await self.notebooks.aclose()
        await self.kernels.aclose()
        await self.server.aclose()

    # -- plumbing ------------------------------------------------------------------------------

    async def _run(
        self,
        ctx: Context,
        tool: str,
        body: Callable[..., Awaitable[T]],
        *,
        path: str | None = None,
        needs_notebook: bool = False,
        cells: list[CellRef] | None = None,
        code: str | None = None,
    ) -> T:
        """Run ``body`` through the guard. With ``needs_notebook`` the notebook path (explicit, or
        this session's default) is resolved first and passed to ``body``; a bad path is refused
        inside the guard, so refusals are audited like every other call."""
        session_id = _session_id(ctx)
        notebook: str | None = None
        problem: JupyterError | None = None
        if needs_notebook:
            try:
                notebook = require_notebook(self.sessions.resolve(session_id, path))
            except JupyterError as exc:
                problem = exc
        call = ToolCall(
            tool=tool,
            identity=_identity(ctx),
            session_id=session_id,
            path=notebook or path,
            cells=[str(c) for c in cells or []],
            code=code,
        )

        async def guarded() -> T:
            if problem is not None:
                raise problem
            return await (body(notebook) if needs_notebook else body())

        try:
            return await self.guard.call(call, guarded)
        except (JupyterError, ToolRefused) as exc:
            raise ToolError(str(exc)) from exc

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self.settings.exec_timeout
        if timeout <= 0:
            raise JupyterError(f"timeout must be a positive number of seconds, got {timeout}")
        return min(timeout, self.settings.exec_max_timeout)

    # -- registration --------------------------------------------------------------------------

    def register(self, mcp: MCPServer) -> None:
        for tool in TOOLS:
            if self.guard.is_listed(tool.name):
                fn = getattr(self, tool.name)
                mcp.add_tool(fn, name=tool.name, annotations=tool.hints, structured_output=False)

    async def refuse(
        self, ctx: Context, tool: str, arguments: dict[str, Any], *, problem: str | None = None
    ) -> CallToolResult:
        """A call that never reaches its tool, audited and counted through the guard like any other:
        a tool the policy forbids (not listed; the guard refuses it with the reason, whatever the
        arguments), or one whose arguments are wrong (``problem``: an error naming the argument)."""

        async def never() -> CallToolResult:
            raise JupyterError(problem or f"tool {tool} is not offered here")

        path, code = arguments.get("path"), arguments.get("code", arguments.get("source"))
        return await self._run(
            ctx,
            tool,
            never,
            path=path if isinstance(path, str) else None,
            code=code if isinstance(code, str) else None,
        )

    # -- files ---------------------------------------------------------------------------------

    async def list_files(
        self,
        ctx: Context,
        path: str = "",
        depth: int = 1,
        offset: int = 0,
        limit: int = 100,
        pattern: str | None = None,
    ) -> CallToolResult:
        """List files and folders under `path` (relative to the Jupyter server root; "" = root).

        depth: how many folder levels to descend (1 = just this folder). pattern: a glob on the
        relative path, e.g. "*.ipynb". offset/limit page through long listings.
        """

        async def body() -> CallToolResult:
            root = normalize_path(path, allow_root=True)
            if not 1 <= depth <= MAX_LIST_DEPTH or limit < 1 or offset < 0:
                raise JupyterError(f"need 1 <= depth <= {MAX_LIST_DEPTH}, limit >= 1 and offset >= 0")
            entries: list[dict[str, Any]] = []
            await self._walk(root, depth, entries)
            if pattern:
                entries = [
                    e
                    for e in entries
                    if fnmatch.fnmatch(e["path"], pattern) or fnmatch.fnmatch(e["name"], pattern)
                ]
            return answers.listing_answer(root, entries, offset, limit)

        return await self._run(ctx, "list_files", body, path=path)

    async def _walk(self, folder: str, depth: int, out: list[dict[str, Any]]) -> None:
        model = await self.server.get_contents(folder, what=f"listing {folder or '/'!r}")
        if model.get("type") != "directory":
            raise JupyterError(f"{folder!r} is a {model.get('type')}, not a folder")
        for entry in sorted(model.get("content") or [], key=lambda e: (e["type"] != "directory", e["name"])):
            out.append(entry)
            if entry["type"] == "directory" and depth > 1:
                await self._walk(entry["path"], depth - 1, out)

    async def create_notebook(
        self, ctx: Context, path: str, kernel_name: str | None = None
    ) -> CallToolResult:
        """Create an empty notebook at `path` (must end in .ipynb and not exist yet).

        kernel_name: an installed kernel (e.g. "python3"); its kernel runs the notebook's cells.
        Omitted: the server's default kernel.
        """

        async def body() -> CallToolResult:
            clean = require_notebook(path)
            if await self.server.exists(clean):
                raise JupyterError(f"{clean!r} already exists; nothing was changed")
            spec = None
            if kernel_name:
                specs = await self.server.kernelspecs()
                if kernel_name not in specs:
                    raise JupyterError(
                        f"kernel_name {kernel_name!r} is not installed on this Jupyter server "
                        f"(installed: {', '.join(sorted(specs)) or 'none'}); nothing was created"
                    )
                spec = specs[kernel_name]
            await self.server.save_contents(
                clean, {"type": "notebook", "format": "json", "content": empty_notebook(kernel_name, spec)}
            )
            if await self.notebooks.collaborative():
                # The room loader gives an empty notebook one blank cell (as JupyterLab shows it);
                # an agent asked for an empty notebook, so appends should start at index 0.
                async with self.notebooks.edit(clean) as cells:
                    if len(cells) == 1 and not source_text(cells.get(0)).strip():
                        cells.delete(0)
            return answers.text_answer(f"created {clean}", path=clean)

        return await self._run(ctx, "create_notebook", body, path=path)

    async def open_notebook(self, ctx: Context, path: str) -> CallToolResult:
        """Make `path` the default notebook for THIS MCP session only; later tools may omit path."""

        async def body() -> CallToolResult:
            clean = require_notebook(path)
            async with self.notebooks.read(clean) as cells:
                count = len(cells)
            self.sessions.set(_session_id(ctx), clean)
            return answers.text_answer(
                f"{clean} is now this session's default notebook ({count} cells)", path=clean, cells=count
            )

        return await self._run(ctx, "open_notebook", body, path=path)

    # -- reading -------------------------------------------------------------------------------

    async def read_notebook(
        self,
        ctx: Context,
        path: str | None = None,
        offset: int = 0,
        limit: int = 50,
        detail: Literal["brief", "full"] = "brief",
        include_outputs: bool = False,
    ) -> CallToolResult:
        """Read cells `offset`..`offset+limit` of a notebook.

        detail="brief" shows the first line of each cell; "full" the whole source.
        include_outputs adds each code cell's outputs as text (images are listed, read_cell shows them).
        """

        async def body(nb_path: str) -> CallToolResult:
            if offset < 0 or limit < 1:
                raise JupyterError("offset must be >= 0 and limit >= 1")
            async with self.notebooks.read(nb_path) as cells:
                snapshot = cells.all()
            end = min(len(snapshot), offset + limit)
            summaries = [
                answers.cell_summary(
                    index,
                    str(cell.get("id", "")),
                    cell,
                    source_text(cell),
                    detail,
                    # Images are left out (read_cell shows them).
                    self._shaped(cell["outputs"], images=False).text
                    if include_outputs and cell.get("outputs")
                    else None,
                )
                for index, cell in enumerate(snapshot[offset:end], start=offset)
            ]
            return answers.notebook_answer(
                nb_path, len(snapshot), end, summaries, self.settings.output_max_chars
            )

        return await self._run(ctx, "read_notebook", body, path=path, needs_notebook=True)

    async def read_cell(
        self, ctx: Context, cell: CellRef, path: str | None = None, output_offset: int = 0
    ) -> CallToolResult:
        """Read one cell (by index or id): its source and outputs, images included.

        output_offset: read the outputs from this character on (after a cut).
        """

        async def body(nb_path: str) -> CallToolResult:
            if output_offset < 0:
                raise JupyterError(f"output_offset must be >= 0, got {output_offset}")
            async with self.notebooks.read(nb_path) as cells:
                index = resolve(cells, cell, nb_path)
                cell_id = cells.cell_id(index)
                data = cells.get(index)
            _audit_cells(cell_id)
            shaped = self._shaped(
                data.get("outputs") or [],
                offset=output_offset,
                more_hint=answers.read_cell_hint(nb_path, cell_id),
            )
            return answers.cell_answer(
                index, cell_id, data, source_text(data), shaped, output_offset=output_offset
            )

        return await self._run(ctx, "read_cell", body, path=path, needs_notebook=True, cells=[cell])

    # -- editing -------------------------------------------------------------------------------

    async def insert_cell(
        self,
        ctx: Context,
        source: str,
        path: str | None = None,
        index: int = -1,
        cell_type: Literal["code", "markdown", "raw"] = "code",
    ) -> CallToolResult:
        """Insert a cell at `index` (-1 = append). Returns the new cell's id."""

        async def body(nb_path: str) -> CallToolResult:
            cell_id, position = await self._insert(nb_path, source, index, cell_type)
            _audit_cells(cell_id)
            return answers.text_answer(
                f"inserted {cell_type} cell {cell_id} at index {position}", cell_id=cell_id, index=position
            )

        return await self._run(ctx, "insert_cell", body, path=path, needs_notebook=True, code=source)

    async def _insert(self, path: str, source: str, index: int, cell_type: str) -> tuple[str, int]:
        cell = new_cell(cell_type, source)
        async with self.notebooks.edit(path) as cells:
            position = insertion_index(cells, index, path)
            cells.insert(position, cell)
        return cell["id"], position

    async def overwrite_cell(
        self, ctx: Context, cell: CellRef, source: str, path: str | None = None
    ) -> CallToolResult:
        """Replace the whole source of a cell (outputs are kept until it runs again)."""

        async def body(nb_path: str) -> CallToolResult:
            async with self.notebooks.edit(nb_path) as cells:
                index = resolve(cells, cell, nb_path)
                cells.set_source(index, source)
                cell_id = cells.cell_id(index)
            _audit_cells(cell_id)
            return answers.text_answer(f"cell {index} ({cell_id}) overwritten", cell_id=cell_id, index=index)

        return await self._run(
            ctx, "overwrite_cell", body, path=path, needs_notebook=True, cells=[cell], code=source
        )

    async def edit_cell(
        self,
        ctx: Context,
        cell: CellRef,
        old: str,
        new: str,
        path: str | None = None,
        replace_all: bool = False,
    ) -> CallToolResult:
        """Replace the exact text `old` with `new` in a cell's source.

        `old` must occur exactly once unless replace_all is true.
        """

        async def body(nb_path: str) -> CallToolResult:
            if not old:
                raise JupyterError("old must be a non-empty piece of the cell's source")
            async with self.notebooks.edit(nb_path) as cells:
                index = resolve(cells, cell, nb_path)
                source = source_text(cells.get(index))
                found = source.count(old)
                if found == 0:
                    raise JupyterError(
                        f"the text to replace was not found in cell {index}; nothing was changed"
                    )
                if found > 1 and not replace_all:
                    raise JupyterError(
                        f"the text to replace occurs {found} times in cell {index}: give more context "
                        "or pass replace_all=true; nothing was changed"
                    )
                cells.set_source(index, source.replace(old, new))
                cell_id = cells.cell_id(index)
            _audit_cells(cell_id)
            return answers.text_answer(
                f"cell {index} ({cell_id}): {found} replacement(s)", cell_id=cell_id, replacements=found
            )

        return await self._run(ctx, "edit_cell", body, path=path, needs_notebook=True, cells=[cell], code=new)

    async def delete_cells(
        self, ctx: Context, cells: list[CellRef], path: str | None = None
    ) -> CallToolResult:
        """Delete cells (indexes or ids). All are checked first: one bad reference deletes nothing."""

        async def body(nb_path: str) -> CallToolResult:
            if not cells:
                raise JupyterError("cells is empty: name at least one cell to delete")
            async with self.notebooks.edit(nb_path) as doc:
                indexes = sorted({resolve(doc, ref, nb_path) for ref in cells}, reverse=True)
                ids = [doc.cell_id(i) for i in indexes]
                for index in indexes:
                    doc.delete(index)
                remaining = len(doc)
            _audit_cells(*ids)
            return answers.text_answer(
                f"deleted {len(indexes)} cell(s); {remaining} left", deleted=ids, remaining=remaining
            )

        return await self._run(ctx, "delete_cells", body, path=path, needs_notebook=True, cells=list(cells))

    async def move_cell(
        self, ctx: Context, cell: CellRef, to_index: int, path: str | None = None
    ) -> CallToolResult:
        """Move a cell so that it ends up at `to_index`."""

        async def body(nb_path: str) -> CallToolResult:
            async with self.notebooks.edit(nb_path) as cells:
                index = resolve(cells, cell, nb_path)
                target = to_index + len(cells) if to_index < 0 else to_index
                if not 0 <= target < len(cells):
                    raise JupyterError(
                        f"to_index {to_index} is out of range: {nb_path!r} has {len(cells)} cells"
                    )
                cell_id = cells.cell_id(index)
                if target != index:
                    move(cells, index, target)
            _audit_cells(cell_id)
            return answers.text_answer(
                f"cell {cell_id} moved from {index} to {target}", cell_id=cell_id, index=target
            )

        return await self._run(ctx, "move_cell", body, path=path, needs_notebook=True, cells=[cell])

    async def clear_outputs(
        self, ctx: Context, path: str | None = None, cell: CellRef | None = None
    ) -> CallToolResult:
        """Clear the outputs of one cell, or of every cell when `cell` is omitted."""

        async def body(nb_path: str) -> CallToolResult:
            async with self.notebooks.edit(nb_path) as cells:
                indexes = [resolve(cells, cell, nb_path)] if cell is not None else range(len(cells))
                cleared: list[str] = []
                for index in indexes:
                    if cells.get(index).get("cell_type") == "code":
                        cells.set_outputs(index, [], None)
                        cleared.append(cells.cell_id(index))
                named = [cells.cell_id(i) for i in indexes] if cell is not None else cleared
            _audit_cells(*named)
            return answers.text_answer(f"cleared outputs of {len(cleared)} cell(s)", cleared=len(cleared))

        return await self._run(
            ctx,
            "clear_outputs",
            body,
            path=path,
            needs_notebook=True,
            cells=[cell] if cell is not None else [],
        )

    # -- execution -----------------------------------------------------------------------------

    async def execute_cell(
        self,
        ctx: Context,
        cell: CellRef,
        path: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> CallToolResult:
        """Run a code cell in the notebook's kernel; outputs are saved into the cell and returned.

        timeout (s): the kernel is interrupted after it. A cell still running after ~50 s
        returns what it has and an execution_id for get_execution.
        """

        async def body(nb_path: str) -> CallToolResult:
            limit = self._timeout(timeout)
            async with self.notebooks.read(nb_path) as cells:
                index = resolve(cells, cell, nb_path)
                data = cells.get(index)
                cell_id = cells.cell_id(index)
            if data["cell_type"] != "code":
                raise JupyterError(f"cell {index} is a {data['cell_type']} cell; only code cells run")
            if not cell_id:
                # An nbformat 4.4 notebook without collaboration: its cells have no ids, and outputs
                # are saved into a cell by id. An edit gives every cell one (saved as nbformat 4.5).
                async with self.notebooks.edit(nb_path) as cells:
                    cell_id = cells.cell_id(resolve(cells, cell, nb_path))
            _audit_cells(cell_id)
            return await self._execute(ctx, nb_path, cell_id, source_text(data), limit)

        return await self._run(ctx, "execute_cell", body, path=path, needs_notebook=True, cells=[cell])

    async def insert_and_execute(
        self,
        ctx: Context,
        source: str,
        path: str | None = None,
        index: int = -1,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> CallToolResult:
        """Insert a code cell at `index` (-1 = append) and run it. Returns its outputs and id."""

        async def body(nb_path: str) -> CallToolResult:
            limit = self._timeout(timeout)
            # The kernel first: when there is none to run the cell, nothing is inserted, so a
            # retry cannot leave a duplicate behind.
            kernel_id = await self.kernels.kernel_for(nb_path)
            cell_id, _ = await self._insert(nb_path, source, index, "code")
            _audit_cells(cell_id)
            try:
                return await self._execute(ctx, nb_path, cell_id, source, limit, kernel_id=kernel_id)
            except JupyterError as exc:
                raise JupyterError(
                    f"cell {cell_id} was inserted but did not run: {exc}. Run it with "
                    f"execute_cell(cell={cell_id!r}) rather than inserting it again"
                ) from exc

        return await self._run(ctx, "insert_and_execute", body, path=path, needs_notebook=True, code=source)

    async def execute_code(
        self,
        ctx: Context,
        code: str,
        path: str | None = None,
        kernel_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> CallToolResult:
        """Run scratch code in a notebook's kernel (or a kernel by id); nothing is saved in the notebook."""

        async def body(nb_path: str | None = None) -> CallToolResult:
            limit = self._timeout(timeout)
            return await self._execute(ctx, nb_path, None, code, limit, kernel_id=kernel_id)

        return await self._run(ctx, "execute_code", body, path=path, needs_notebook=not kernel_id, code=code)

    async def get_execution(
        self, ctx: Context, execution_id: str, wait: float = 30.0, output_offset: int = 0
    ) -> CallToolResult:
        """Wait up to `wait` s for an execution that outlived its call, then return its outputs so far.

        output_offset: read its outputs from this character on (after a cut).
        """

        async def body() -> CallToolResult:
            if output_offset < 0:
                raise JupyterError(f"output_offset must be >= 0, got {output_offset}")
            execution = self.executor.find(execution_id)
            call = current_call()
            if call is not None:  # audit which notebook and cell this execution belongs to
                call.path = execution.path
                call.cells = [execution.cell_id] if execution.cell_id else []
            await self.executor.follow(execution, wait, on_progress=self._progress(ctx))
            return self._execution_result(execution, output_offset=output_offset)

        return await self._run(ctx, "get_execution", body)

    async def _execute(
        self,
        ctx: Context,
        path: str | None,
        cell_id: str | None,
        code: str,
        timeout: float,  # noqa: ASYNC109
        *,
        kernel_id: str | None = None,
    ) -> CallToolResult:
        execution = await self.executor.run(
            code,
            timeout,
            path=path,
            cell_id=cell_id,
            kernel_id=kernel_id,
            on_progress=self._progress(ctx, timeout),
        )
        # Audited and counted as a timeout only here, where the call's own timeout ran out.
        call, reason = current_call(), timeout_reason(execution, timeout)
        if call is not None and reason is not None:
            call.outcome, call.reason = "timeout", reason
        return self._execution_result(execution)

    def _progress(self, ctx: Context, timeout: float | None = None) -> Progress:
        async def report(execution: Execution) -> None:
            await ctx.report_progress(
                progress=round(execution.elapsed, 1),
                total=timeout,
                message=answers.progress_message(execution),
            )

        return report

    def _execution_result(self, execution: Execution, *, output_offset: int = 0) -> CallToolResult:
        shaped = self._shaped(
            execution.outputs, offset=output_offset, more_hint=answers.read_on_hint(execution)
        )
        return answers.execution_answer(execution, shaped)

    def _shaped(
        self,
        outputs: list[dict[str, Any]],
        *,
        offset: int = 0,
        more_hint: answers.Hint | None = None,
        images: bool = True,
    ) -> Shaped:
        """Outputs shaped to this sidecar's limits; answers cut to them are counted, so an admin
        sees agents hitting them."""
        shaped = shape(
            outputs,
            self.settings.output_max_chars,
            self.settings.output_max_image_bytes if images else 0,
            offset=offset,
            more_hint=more_hint,
        )
        if shaped.cut_chars:
            metrics.record_truncation("text")
        if shaped.dropped_images:
            metrics.record_truncation("image")
        return shaped

    # -- kernels -------------------------------------------------------------------------------

    async def list_kernels(self, ctx: Context) -> CallToolResult:
        """List running kernels and the notebooks they belong to."""

        async def body() -> CallToolResult:
            kernels = await self.server.list_kernels()
            by_kernel = {
                s["kernel"]["id"]: s.get("path", "")
                for s in await self.server.list_sessions()
                if s.get("kernel")
            }
            rows = [
                {
                    "id": k["id"],
                    "name": k.get("name"),
                    "state": k.get("execution_state"),
                    "notebook": by_kernel.get(k["id"]),
                    "last_activity": k.get("last_activity"),
                }
                for k in kernels
            ]
            return answers.kernels_answer(rows)

        return await self._run(ctx, "list_kernels", body)

    async def interrupt_kernel(
        self, ctx: Context, path: str | None = None, kernel_id: str | None = None
    ) -> CallToolResult:
        """Interrupt the kernel of a notebook (or a kernel by id), like the stop button."""

        async def body(nb_path: str | None = None) -> CallToolResult:
            # Never start a kernel just to interrupt it.
            target = kernel_id or await self.kernels.running_kernel(nb_path)  # type: ignore[arg-type]
            await self.kernels.interrupt(target)
            return answers.text_answer(f"kernel {target} interrupted", kernel_id=target)

        return await self._run(ctx, "interrupt_kernel", body, path=path, needs_notebook=not kernel_id)

    async def restart_kernel(
        self, ctx: Context, path: str | None = None, kernel_id: str | None = None
    ) -> CallToolResult:
        """Restart the kernel of a notebook (or a kernel by id). All kernel state is lost.

        For a notebook whose kernel is gone, this starts a fresh one.
        """

        async def body(nb_path: str | None = None) -> CallToolResult:
            started = time.monotonic()
            new_id, message = await self.kernels.restart(kernel_id, nb_path)
            return answers.text_answer(
                message, kernel_id=new_id, seconds=round(time.monotonic() - started, 2)
            )

        return await self._run(ctx, "restart_kernel", body, path=path, needs_notebook=not kernel_id)
