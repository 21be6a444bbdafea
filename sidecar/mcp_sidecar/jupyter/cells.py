"""One cell-list interface over the two ways a notebook is held: a Y document or an nbformat dict.

Tools edit notebooks only through ``Cells``, so every edit is written once and works both with
jupyter-collaboration (live, merged with concurrent human edits) and without it (Contents API).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Protocol

from jupyter_ydoc import YNotebook

from .errors import JupyterError

CELL_TYPES = ("code", "markdown", "raw")


class Cells(Protocol):
    def __len__(self) -> int: ...
    def get(self, index: int) -> dict[str, Any]: ...
    def all(self) -> list[dict[str, Any]]: ...
    def cell_id(self, index: int) -> str: ...
    def insert(self, index: int, cell: dict[str, Any]) -> None: ...
    def set_source(self, index: int, source: str) -> None: ...
    def delete(self, index: int) -> None: ...
    def set_outputs(self, index: int, outputs: list[dict[str, Any]], execution_count: int | None) -> None: ...


def new_cell_id() -> str:
    """Short, unique, and never all digits (so it cannot be mistaken for an index)."""
    while True:
        candidate = uuid.uuid4().hex[:12]
        if not candidate.isdigit():
            return candidate


def new_cell(cell_type: str, source: str) -> dict[str, Any]:
    if cell_type not in CELL_TYPES:
        raise JupyterError(f"cell_type must be one of {', '.join(CELL_TYPES)}, got {cell_type!r}")
    cell: dict[str, Any] = {
        "id": new_cell_id(),
        "cell_type": cell_type,
        "source": source,
        "metadata": {},
    }
    if cell_type == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


def give_cells_ids(notebook: dict[str, Any]) -> None:
    """nbformat 4.5 normalisation before an edit: every cell gets an id (outputs are saved into a
    cell by id).

    A 4.4 notebook becomes 4.5 even when it has no cells yet: the edit may insert cells, and
    those carry ids, which are invalid in 4.4. JupyterLab saves such a notebook as 4.5 too."""
    for cell in notebook.get("cells") or []:
        if not cell.get("id"):
            cell["id"] = new_cell_id()
    if notebook.get("nbformat") == 4 and (notebook.get("nbformat_minor") or 0) < 5:
        notebook["nbformat_minor"] = 5


def empty_notebook(kernel_name: str | None = None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """An nbformat 4.5 notebook with no cells (written out here: importing nbformat costs ~1 s).

    ``spec`` is the installed kernelspec of ``kernel_name`` (its display name and language)."""
    metadata: dict[str, Any] = {}
    if kernel_name:
        spec = spec or {}
        metadata["kernelspec"] = {
            "name": kernel_name,
            "display_name": spec.get("display_name") or kernel_name,
            **({"language": spec["language"]} if spec.get("language") else {}),
        }
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata, "cells": []}


def source_text(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def resolve(cells: Cells, ref: int | str | None, path: str) -> int:
    """The index of ``ref``: an index (negative counts from the end) or a cell id."""
    if ref is None:
        raise JupyterError("cell is required: give an index (0-based, -1 = last) or a cell id")
    count = len(cells)
    if isinstance(ref, str) and ref.lstrip("-").isdigit():
        # An id that happens to be all digits wins over the index it also spells.
        by_id = next((i for i, cell in enumerate(cells.all()) if cell.get("id") == ref), None)
        if by_id is not None:
            return by_id
        ref = int(ref)
    if isinstance(ref, int) and not isinstance(ref, bool):
        index = ref + count if ref < 0 else ref
        if not 0 <= index < count:
            raise JupyterError(f"cell index {ref} is out of range: {path!r} has {count} cells")
        return index
    if isinstance(ref, str):
        for index, cell in enumerate(cells.all()):
            if cell.get("id") == ref:
                return index
        raise JupyterError(f"no cell with id {ref!r} in {path!r}")
    raise JupyterError(f"cell must be an index or a cell id, got {type(ref).__name__}")


def insertion_index(cells: Cells, index: int, path: str) -> int:
    """Where to insert: ``-1`` (or ``len``) appends; other negatives count from the end."""
    count = len(cells)
    position = count + 1 + index if index < 0 else index
    if not 0 <= position <= count:
        raise JupyterError(f"insert index {index} is out of range: {path!r} has {count} cells")
    return position


def move(cells: Cells, index: int, to_index: int) -> None:
    cell = cells.get(index)
    cells.delete(index)
    cells.insert(to_index, cell)


class ListCells:
    """Cells of an nbformat notebook dict (the Contents API way)."""

    def __init__(self, notebook: dict[str, Any]) -> None:
        self.notebook = notebook
        self._cells: list[dict[str, Any]] = notebook.setdefault("cells", [])

    def __len__(self) -> int:
        return len(self._cells)

    def get(self, index: int) -> dict[str, Any]:
        cell = dict(self._cells[index])
        cell["source"] = source_text(cell)
        return cell

    def all(self) -> list[dict[str, Any]]:
        return [self.get(i) for i in range(len(self._cells))]

    def cell_id(self, index: int) -> str:
        return str(self._cells[index].get("id", ""))

    def insert(self, index: int, cell: dict[str, Any]) -> None:
        self._cells.insert(index, dict(cell))

    def set_source(self, index: int, source: str) -> None:
        self._cells[index]["source"] = source

    def delete(self, index: int) -> None:
        del self._cells[index]

    def set_outputs(self, index: int, outputs: list[dict[str, Any]], execution_count: int | None) -> None:
        self._cells[index]["outputs"] = outputs
        self._cells[index]["execution_count"] = execution_count


class YCells:
    """Cells of a collaborative Y notebook: edits become Y updates that merge with everyone else's."""

    def __init__(
        self, ynotebook: YNotebook, snapshot: Callable[[], list[dict[str, Any]]] | None = None
    ) -> None:
        self.ynb = ynotebook
        self._snapshot = snapshot

    def all(self) -> list[dict[str, Any]]:
        """Every cell as plain Python (read-only), from the room's cached snapshot when there is one."""
        return self._snapshot() if self._snapshot else plain_cells(self.ynb)

    def __len__(self) -> int:
        return len(self.ynb.ycells)

    def get(self, index: int) -> dict[str, Any]:
        return self.ynb.get_cell(index)

    def cell_id(self, index: int) -> str:
        return str(self.ynb.ycells[index].get("id", ""))

    def insert(self, index: int, cell: dict[str, Any]) -> None:
        self.ynb.ycells.insert(index, self.ynb.create_ycell(cell))

    def set_source(self, index: int, source: str) -> None:
        self.ynb.set_cell(index, source=source)

    def delete(self, index: int) -> None:
        del self.ynb.ycells[index]

    def set_outputs(self, index: int, outputs: list[dict[str, Any]], execution_count: int | None) -> None:
        ycell = self.ynb.ycells[index]
        self.ynb._set_ycell_outputs(ycell, outputs)  # the schema-correct writer (stream text as Y text)
        ycell["execution_count"] = execution_count


def plain_cells(ynb: YNotebook) -> list[dict[str, Any]]:
    """All cells as plain Python in one conversion (much cheaper than cell by cell)."""
    return [_plain(cell) for cell in ynb.ycells.to_py() or []]


def _plain(cell: dict[str, Any]) -> dict[str, Any]:
    cell.pop("execution_state", None)
    if isinstance(cell.get("execution_count"), float):  # Yjs numbers arrive as floats
        cell["execution_count"] = int(cell["execution_count"])
    return cell


class Snapshot:
    """A plain-Python copy of a Y notebook's cells, kept current from the doc's change events.

    Reads are served from it without touching the Y doc; a change re-converts only the cells it
    touched (one edited cell of 500 costs one conversion, not 500). Anything unexpected drops the
    copy, and the next read rebuilds it whole.
    """

    def __init__(self, ynb: YNotebook) -> None:
        self.ynb = ynb
        self._cells: list[dict[str, Any] | None] | None = None
        self._subscription = ynb.ycells.observe_deep(self._on_change)

    def cells(self) -> list[dict[str, Any]]:
        if self._cells is None or len(self._cells) != len(self.ynb.ycells):
            self._cells = list(plain_cells(self.ynb))
        return self._cells  # type: ignore[return-value]  # no None left once refreshed

    def _on_change(self, events: list[Any]) -> None:
        cells = self._cells
        if cells is None:
            return
        try:
            touched: set[int] = set()
            # The array's own event first: nested events' paths are positions after it.
            for event in events:
                if not event.path:
                    position = 0
                    for op in event.delta:
                        if "retain" in op:
                            position += op["retain"]
                        elif "delete" in op:
                            del cells[position : position + op["delete"]]
                        elif "insert" in op:
                            count = len(op["insert"])
                            cells[position:position] = [None] * count
                            position += count
            for event in events:
                if event.path:
                    touched.add(int(event.path[0]))
            for index, cell in enumerate(cells):
                if cell is None or index in touched:
                    cells[index] = _plain(self.ynb.ycells[index].to_py())
        except Exception:  # an event shape we did not foresee: rebuild on the next read
            self._cells = None
