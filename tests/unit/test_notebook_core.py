"""Pure pieces of the notebook layer: path checks, cell references, the list backend, session defaults."""

from __future__ import annotations

import pytest
from jupyter_ydoc import YNotebook
from mcp_sidecar.jupyter.cells import (
    ListCells,
    YCells,
    give_cells_ids,
    insertion_index,
    move,
    new_cell,
    new_cell_id,
    resolve,
)
from mcp_sidecar.jupyter.errors import JupyterError
from mcp_sidecar.jupyter.paths import normalize_path, require_notebook
from mcp_sidecar.sessions import SessionDefaults


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a.ipynb", "a.ipynb"),
        ("./work//a.ipynb", "work/a.ipynb"),
        ("w\\a.ipynb", "w/a.ipynb"),
        (" a.ipynb ", "a.ipynb"),
    ],
)
def test_normalize_path(raw: str, clean: str) -> None:
    assert normalize_path(raw) == clean


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("../x.ipynb", "escapes the Jupyter server root"),
        ("a/../../x.ipynb", "escapes"),
        ("/etc/passwd", "is absolute"),
        ("C:/x.ipynb", "is absolute"),
        ("a\x00.ipynb", "NUL"),
        ("", "empty"),
        (None, "required"),
        (3, "must be a string"),
    ],
)
def test_bad_paths_are_refused_with_the_reason(raw: object, message: str) -> None:
    with pytest.raises(JupyterError, match=message):
        normalize_path(raw)  # type: ignore[arg-type]


def test_root_allowed_only_when_asked() -> None:
    assert normalize_path("", allow_root=True) == ""
    assert normalize_path(".", allow_root=True) == ""


def test_require_notebook() -> None:
    assert require_notebook("x/a.ipynb") == "x/a.ipynb"
    with pytest.raises(JupyterError, match="is not a notebook"):
        require_notebook("notes.txt")


def list_cells(*sources: str) -> ListCells:
    cells = [new_cell("code", s) | {"id": f"id{i}"} for i, s in enumerate(sources)]
    return ListCells({"cells": cells})


def y_cells(*sources: str) -> YCells:
    nb = YNotebook()
    for i, s in enumerate(sources):
        nb.append_cell(new_cell("code", s) | {"id": f"id{i}"})
    return YCells(nb)


@pytest.fixture(params=["list", "y"])
def make(request: pytest.FixtureRequest):
    return list_cells if request.param == "list" else y_cells


def test_resolve_by_index_negative_and_id(make) -> None:
    cells = make("a", "b", "c")
    assert resolve(cells, 0, "n") == 0
    assert resolve(cells, -1, "n") == 2
    assert resolve(cells, "1", "n") == 1
    assert resolve(cells, "id2", "n") == 2


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (3, "out of range.*has 3 cells"),
        (-4, "out of range"),
        ("nope", "no cell with id 'nope'"),
        (None, "required"),
        (True, "index or a cell id"),
        (1.5, "index or a cell id"),
    ],
)
def test_resolve_errors(make, ref: object, message: str) -> None:
    with pytest.raises(JupyterError, match=message):
        resolve(make("a", "b", "c"), ref, "n")  # type: ignore[arg-type]


def test_insertion_index(make) -> None:
    cells = make("a", "b")
    assert insertion_index(cells, -1, "n") == 2
    assert insertion_index(cells, 0, "n") == 0
    assert insertion_index(cells, 2, "n") == 2
    assert insertion_index(cells, -3, "n") == 0
    with pytest.raises(JupyterError, match="out of range"):
        insertion_index(cells, 3, "n")


def test_edits_on_both_backends_agree(make) -> None:
    cells = make("a", "b", "c")
    cells.insert(1, new_cell("markdown", "# hi") | {"id": "md"})
    cells.set_source(0, "a2")
    move(cells, 0, 3)
    cells.delete(0)
    cells.set_outputs(1, [{"output_type": "stream", "name": "stdout", "text": "out"}], 7)
    got = [(cells.cell_id(i), cells.get(i)["source"]) for i in range(len(cells))]
    assert got == [("id1", "b"), ("id2", "c"), ("id0", "a2")]
    assert cells.get(1)["execution_count"] == 7
    assert cells.get(1)["outputs"][0]["text"] == "out"


def test_all_digit_ids_resolve_as_ids_first(make) -> None:
    cells = make("a", "b")
    cells.insert(2, new_cell("code", "digits") | {"id": "123456789012"})
    assert resolve(cells, "123456789012", "n") == 2
    assert resolve(cells, "1", "n") == 1


def test_new_cell_ids_are_never_all_digits() -> None:
    assert not any(new_cell_id().isdigit() for _ in range(5000))


def test_give_cells_ids_normalises_an_nbformat_4_4_notebook() -> None:
    cells = [{"cell_type": "code"}, {"cell_type": "raw", "id": "k"}]
    old = {"nbformat": 4, "nbformat_minor": 4, "cells": cells}
    give_cells_ids(old)
    first, second = old["cells"]
    assert old["nbformat_minor"] == 5 and first["id"] and not first["id"].isdigit() and second["id"] == "k"
    kept = first["id"]
    give_cells_ids(old)  # idempotent: a 4.5 notebook with ids is left alone
    assert old["nbformat_minor"] == 5 and old["cells"][0]["id"] == kept
    # An empty 4.4 notebook too: the edit may insert cells, and their ids are invalid in 4.4.
    empty = {"nbformat": 4, "nbformat_minor": 4, "cells": []}
    give_cells_ids(empty)
    assert empty["nbformat_minor"] == 5 and empty["cells"] == []


def test_new_cell_rejects_unknown_type() -> None:
    with pytest.raises(JupyterError, match="cell_type must be one of"):
        new_cell("python", "x")
    assert "outputs" not in new_cell("markdown", "x")


def test_session_defaults_are_per_session() -> None:
    defaults = SessionDefaults(max_sessions=2)
    defaults.set("s1", "a.ipynb")
    defaults.set("s2", "b.ipynb")
    assert defaults.resolve("s1", None) == "a.ipynb"
    assert defaults.resolve("s2", None) == "b.ipynb"
    assert defaults.resolve("s2", "explicit.ipynb") == "explicit.ipynb"
    defaults.set("s3", "c.ipynb")  # s1 is least recently used and dropped
    with pytest.raises(JupyterError, match="this session has no open notebook"):
        defaults.resolve("s1", None)
    with pytest.raises(JupyterError, match="no MCP session"):
        defaults.resolve(None, None)
    with pytest.raises(JupyterError, match="stateless clients pass path"):
        defaults.set(None, "a.ipynb")


def test_snapshot_follows_every_kind_of_change_incrementally(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random local and remote edits: the kept copy always equals a fresh full conversion."""
    import random

    from mcp_sidecar.jupyter import cells as cells_module
    from mcp_sidecar.jupyter.cells import Snapshot, plain_cells
    from pycrdt import Doc

    rebuilds: list[int] = []
    monkeypatch.setattr(cells_module, "plain_cells", lambda ynb: rebuilds.append(1) or plain_cells(ynb))
    rng = random.Random(7)
    local = YNotebook(Doc())
    remote = YNotebook(Doc())
    snapshot = Snapshot(local)
    cells = YCells(local, snapshot.cells)
    other = YCells(remote)
    for step in range(300):
        target, doc = (cells, local) if rng.random() < 0.7 else (other, remote)
        n = len(target)
        op = rng.choice(["insert", "source", "outputs", "delete", "move", "batch"])
        if op == "insert" or n == 0:
            target.insert(rng.randint(0, n), new_cell("code", f"s{step}"))
        elif op == "source":
            target.set_source(rng.randrange(n), f"edited {step}\n" * rng.randint(1, 3))
        elif op == "outputs":
            target.set_outputs(
                rng.randrange(n), [{"output_type": "stream", "name": "stdout", "text": str(step)}], step
            )
        elif op == "delete":
            target.delete(rng.randrange(n))
        elif op == "move":
            move(target, rng.randrange(n), rng.randrange(n))
        else:
            with doc.ydoc.transaction():
                target.insert(0, new_cell("markdown", f"m{step}"))
                target.set_source(len(target) - 1, f"last {step}")
        # Exchange updates both ways, as the room does.
        remote.ydoc.apply_update(local.ydoc.get_update(remote.ydoc.get_state()))
        local.ydoc.apply_update(remote.ydoc.get_update(local.ydoc.get_state()))
        assert snapshot.cells() == plain_cells(local), f"diverged at step {step} ({op})"
    assert len(rebuilds) == 1, "built once, then kept current from change events alone"
