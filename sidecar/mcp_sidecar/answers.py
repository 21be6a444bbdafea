"""Answers: what a tool returns, rendered from shaped outputs, executions, cells and listings. Pure.

``outputs.py`` decides which characters and images of the outputs an agent reads; this module
puts them into MCP content blocks with the notes that explain the state ("[aborted: ...]",
"[still running ...]") and the structured content a client can act on. The tools (tools.py) do
the shaping (with the configured limits) and hand the result here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent

from .outputs import Part, Shaped, TextPart, cut_text

if TYPE_CHECKING:
    from .jupyter.kernels import Execution

Hint = Callable[[int], str]  # the call that reads on from a character offset


def text_answer(text: str, **structured: Any) -> CallToolResult:
    """One text block, and the keyword arguments (if any) as structured content."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured or None
    )


def outputs_content(parts: Sequence[Part]) -> list[ContentBlock]:
    return [
        TextContent(type="text", text=p.text)
        if isinstance(p, TextPart)
        else ImageContent(type="image", data=p.data, mime_type=p.mime_type)
        for p in parts
    ]


# -- reading on after a cut ------------------------------------------------------------------------


def read_cell_hint(path: str, cell_id: str) -> Hint:
    return lambda at: f"read on with read_cell(path={path!r}, cell={cell_id!r}, output_offset={at})"


def read_on_hint(execution: Execution) -> Hint:
    """A notebook cell's outputs are read on from the cell, scratch code's from the execution."""
    if execution.cell_id and execution.path:
        return read_cell_hint(execution.path, execution.cell_id)
    eid = execution.id
    return lambda at: f"read on with get_execution(execution_id={eid!r}, output_offset={at})"


# -- executions ------------------------------------------------------------------------------------


def status_notes(execution: Execution) -> list[str]:
    """What the agent must know besides the outputs: the state if not plainly over, and failures."""
    status = execution.status
    notes: list[str] = []
    if status == "queued":
        notes.append(
            f"[queued: kernel {execution.kernel_id} is still running other code (another session's "
            f"or the notebook user's); this code has not started after {execution.elapsed:.0f} s, and "
            "nothing was interrupted. It runs once the kernel is free, its timeout counting from then: "
            f"call get_execution(execution_id={execution.id!r}) to wait for it, or interrupt_kernel to "
            "stop the code running now]"
        )
    elif status == "running" and execution.interrupt_ignored_for is not None:
        notes.append(
            f"[timed out after {execution.interrupted_after:g} s, but the interrupt did not stop it: "
            f"kernel {execution.kernel_id} is still running this code {execution.interrupt_ignored_for:g} s "
            "after the interrupt (the code ignores or blocks SIGINT, e.g. signal.SIG_IGN or a long "
            "C call); outputs so far above. To stop it call restart_kernel (all variables and "
            f"imports are lost); to wait for it to end by itself call get_execution(execution_id="
            f"{execution.id!r})]"
        )
    elif status == "running":
        notes.append(
            f"[still running after {execution.elapsed:.0f} s; outputs so far above. "
            f"Call get_execution(execution_id={execution.id!r}) to wait for the rest]"
        )
    elif status == "timeout" and execution.interrupt_ignored_for is not None:
        notes.append(
            f"[timed out after {execution.interrupted_after:g} s: the interrupt did not stop it within "
            f"{execution.interrupt_ignored_for:g} s, and it ended {execution.elapsed:.0f} s after it "
            "was sent; the output above is all it produced]"
        )
    elif status == "timeout":
        notes.append(
            f"[timed out after {execution.interrupted_after:.0f} s: kernel {execution.kernel_id} "
            "was interrupted; the output above is what it produced until then]"
        )
    elif status == "aborted":
        notes.append("[aborted: the kernel skipped this code (an earlier request failed); nothing ran]")
    if execution.failure:
        notes.append(f"[{execution.failure}]")
    if execution.save_error:
        notes.append(f"[{execution.save_error}]")
    return notes


def execution_answer(execution: Execution, shaped: Shaped) -> CallToolResult:
    """An execution's outputs (shaped) and state; an error result only when the kernel was lost."""
    status = execution.status
    notes = status_notes(execution)
    content = outputs_content(shaped.parts)
    if not content and not notes:
        content = [TextContent(type="text", text=f"[{status}, no output]")]
    content += [TextContent(type="text", text=n) for n in notes]
    return CallToolResult(
        content=content,
        structured_content={
            "status": status,
            "execution_id": execution.id,
            "execution_count": execution.execution_count,
            "cell_id": execution.cell_id,
            "kernel_id": execution.kernel_id,
            "elapsed_s": round(execution.elapsed, 3),
            "output_chars": shaped.total_chars,
        },
        is_error=bool(execution.failure),
    )


def progress_message(execution: Execution) -> str:
    if execution.status == "queued":
        return f"queued {execution.elapsed:.0f} s: the kernel is running other code"
    return f"running {execution.elapsed:.0f} s, {len(execution.outputs)} output(s) so far"


# -- cells and notebooks ---------------------------------------------------------------------------


def _cell_head(index: int, cell_id: str, cell: Mapping[str, Any]) -> str:
    count = cell.get("execution_count")
    return f"[{index}] {cell['cell_type']} id={cell_id}" + (f" [{count}]" if count else "")


def cell_answer(
    index: int, cell_id: str, cell: Mapping[str, Any], source: str, shaped: Shaped, *, output_offset: int
) -> CallToolResult:
    """One cell: its header and source (not when reading on in its outputs), then its outputs."""
    content: list[ContentBlock] = []
    if output_offset == 0:
        content.append(TextContent(type="text", text=f"{_cell_head(index, cell_id, cell)}\n{source}"))
    if shaped.parts:
        content.append(TextContent(type="text", text=">>> output:"))
        content.extend(outputs_content(shaped.parts))
    return CallToolResult(
        content=content or [TextContent(type="text", text="(no more output)")],
        structured_content={
            "index": index,
            "cell_id": cell_id,
            "cell_type": cell["cell_type"],
            "execution_count": cell.get("execution_count"),
            "output_chars": shaped.total_chars,
        },
    )


def cell_summary(
    index: int,
    cell_id: str,
    cell: Mapping[str, Any],
    source: str,
    detail: Literal["brief", "full"],
    output_text: str | None = None,
) -> str:
    """A cell in a notebook listing: "brief" shows the first line of its source, "full" all of it;
    ``output_text`` (its outputs as text), when given, follows."""
    if detail == "brief":
        first, _, rest = source.partition("\n")
        source = first + (f"  … (+{rest.count(chr(10)) + 1} lines)" if rest else "")
    text = f"--- {_cell_head(index, cell_id, cell)}\n{source}"
    if output_text is not None:
        text += "\n>>> output:\n" + output_text.rstrip("\n")
    return text


def notebook_answer(
    path: str, count: int, end: int, summaries: Sequence[str], max_chars: int
) -> CallToolResult:
    """A page of a notebook's cells, ending at cell ``end``, cut to ``max_chars`` as one text."""
    chunks = [f"{path}: {count} cells", *summaries]
    if end < count:
        chunks.append(f"[cells {end}..{count - 1} not shown: call again with offset={end}]")
    text, _ = cut_text(
        "\n".join(chunks),
        max_chars,
        lambda at: "read fewer cells with offset/limit, or one cell with read_cell",
    )
    return text_answer(text)


# -- files and kernels -----------------------------------------------------------------------------


def listing_answer(
    root: str, entries: Sequence[Mapping[str, Any]], offset: int, limit: int
) -> CallToolResult:
    """A page of a folder listing (Jupyter contents models), with how to read the next one."""
    page = entries[offset : offset + limit]
    lines = [
        f"{e['path']}/"
        if e["type"] == "directory"
        else f"{e['path']}\t{e['type']}\t{e.get('size') or 0} bytes\t{e.get('last_modified', '')}"
        for e in page
    ]
    more = len(entries) - offset - len(page)
    if more > 0:
        lines.append(f"[{more} more entries: call again with offset={offset + len(page)}]")
    return text_answer(
        "\n".join(lines) or f"(no entries under {root or '/'!r})",
        total=len(entries),
        entries=[{k: e.get(k) for k in ("path", "type", "size", "last_modified")} for e in page],
    )


def kernels_answer(rows: Sequence[Mapping[str, Any]]) -> CallToolResult:
    """Running kernels: id, name, state and notebook per line."""
    lines = [f"{r['id']}\t{r['name']}\t{r['state']}\t{r['notebook'] or '-'}" for r in rows]
    return text_answer("\n".join(lines) or "(no kernels running)", kernels=list(rows))
