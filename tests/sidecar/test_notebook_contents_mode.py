"""Without jupyter-collaboration: the Contents API, with a conflict check, never a raw file write."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import nbformat
import pytest
from mcp_sidecar.jupyter.documents import Notebooks
from mcp_sidecar.jupyter.errors import JupyterError
from mcp_sidecar.jupyter.server import JupyterServer

from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import call, fails, held_client, text
from tests.harness.notebooks import saved_notebook, sources, unique, write_notebook

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="session")
async def plain_sidecar(jupyter_plain: JupyterProcess) -> AsyncIterator[RunningSidecar]:
    async with sidecar_in_process(jupyter_plain) as running:
        yield running


async def test_server_has_no_collaboration(plain_sidecar) -> None:
    assert await plain_sidecar.app.state.tools.notebooks.collaborative() is False


async def test_tools_work_through_the_contents_api(plain_sidecar, jupyter_plain) -> None:
    path = unique("plain")
    async with held_client(plain_sidecar.url, plain_sidecar.token) as client:
        await call(client, "create_notebook", path=path)
        created = await saved_notebook(jupyter_plain.root, path)
        assert created["cells"] == []  # saved at once: no room, no delay
        first = await call(client, "insert_cell", path=path, source="x = 20")
        await call(client, "insert_cell", path=path, source="# notes", cell_type="markdown")
        await call(
            client, "edit_cell", path=path, cell=first.structured_content["cell_id"], old="20", new="21"
        )
        await call(client, "execute_cell", path=path, cell=first.structured_content["cell_id"])
        run = await call(client, "insert_and_execute", path=path, source="x * 2")
        assert "42" in text(run)
        await call(client, "move_cell", path=path, cell=1, to_index=0)
        assert sources(await saved_notebook(jupyter_plain.root, path)) == ["# notes", "x = 21", "x * 2"]
        cell = (await saved_notebook(jupyter_plain.root, path))["cells"][2]
        assert "".join(cell["outputs"][0]["data"]["text/plain"]) == "42"
        assert cell["execution_count"] == run.structured_content["execution_count"]
        await call(client, "delete_cells", path=path, cells=[0])
        await call(client, "clear_outputs", path=path)
        saved = await saved_notebook(jupyter_plain.root, path)
        assert sources(saved) == ["x = 21", "x * 2"] and saved["cells"][1]["outputs"] == []
        assert "does not exist" in await fails(client, "read_notebook", path="nope.ipynb")


async def test_a_concurrent_save_is_never_overwritten(jupyter_plain) -> None:
    """Someone saves the notebook while an edit is being made: the edit is refused, their save stays."""
    path = unique("conflict")
    write_notebook(jupyter_plain, path, ["original"])
    server = JupyterServer(jupyter_plain.url, jupyter_plain.token)
    notebooks = Notebooks(server)
    try:
        with pytest.raises(JupyterError, match="changed on the server while this edit was being made"):
            async with notebooks.edit(path) as cells:
                cells.set_source(0, "agent edit")
                # The human's save, through the server, between our read and our write:
                async with httpx.AsyncClient(
                    base_url=jupyter_plain.url, headers=jupyter_plain.headers
                ) as http:
                    content = await saved_notebook(jupyter_plain, path)  # through the Contents API
                    content["cells"][0]["source"] = "human save"
                    model = {"type": "notebook", "format": "json", "content": content}
                    put = await http.put(f"api/contents/{path}", json=model)
                    assert put.status_code == 200
        assert sources(await saved_notebook(jupyter_plain.root, path)) == ["human save"]
    finally:
        await server.aclose()


def write_v4_4(jupyter: JupyterProcess, path: str, sources: list[str]) -> None:
    """An nbformat 4.4 notebook: cells have no ids (older JupyterLab, nbconvert, many tools)."""
    cells = [
        {"cell_type": "code", "source": s, "metadata": {}, "outputs": [], "execution_count": None}
        for s in sources
    ]
    notebook = {"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells}
    (jupyter.root / path).write_text(json.dumps(notebook))


async def test_nbformat_4_4_cells_get_ids_and_their_outputs_are_saved(plain_sidecar, jupyter_plain) -> None:
    path = unique("v4-4")
    write_v4_4(jupyter_plain, path, ["6 * 7", "y = 1"])
    async with held_client(plain_sidecar.url, plain_sidecar.token) as client:
        assert "6 * 7" in text(await call(client, "read_cell", path=path, cell=0))
        as_written = await saved_notebook(jupyter_plain.root, path)
        assert as_written["nbformat_minor"] == 4  # reading changes nothing
        run = await call(client, "execute_cell", path=path, cell=0)
        assert "42" in text(run) and "not saved" not in text(run), text(run)
        saved = await saved_notebook(jupyter_plain.root, path)
        assert saved["nbformat_minor"] == 5 and all(c.get("id") for c in saved["cells"])
        first = saved["cells"][0]
        assert first["id"] == run.structured_content["cell_id"]
        assert "".join(first["outputs"][0]["data"]["text/plain"]) == "42"
        assert first["execution_count"] == run.structured_content["execution_count"]
        # The ids stay: the cell is found by the id the answer gave.
        again = await call(client, "execute_cell", path=path, cell=first["id"])
        saved = await saved_notebook(jupyter_plain.root, path)
        assert saved["cells"][0]["execution_count"] == again.structured_content["execution_count"]


async def test_an_empty_nbformat_4_4_notebook_is_saved_valid_after_an_insert(
    plain_sidecar, jupyter_plain
) -> None:
    """Cell ids are invalid in nbformat 4.4: inserting into an empty 4.4 notebook saves it as 4.5."""
    path = unique("v4-4-empty")
    write_v4_4(jupyter_plain, path, [])
    async with held_client(plain_sidecar.url, plain_sidecar.token) as client:
        await call(client, "insert_cell", path=path, source="x = 1")
    saved = await saved_notebook(jupyter_plain.root, path)
    assert saved["nbformat_minor"] >= 5 and saved["cells"][0]["id"]
    nbformat.validate(saved)


async def test_nbformat_4_4_insert_and_execute_saves_outputs(plain_sidecar, jupyter_plain) -> None:
    path = unique("v4-4-insert")
    write_v4_4(jupyter_plain, path, ["x = 20"])
    async with held_client(plain_sidecar.url, plain_sidecar.token) as client:
        await call(client, "execute_cell", path=path, cell=0)
        run = await call(client, "insert_and_execute", path=path, source="x + 1")
        assert "21" in text(run) and "not saved" not in text(run)
    saved = await saved_notebook(jupyter_plain.root, path)
    assert [c["id"] for c in saved["cells"]][1] == run.structured_content["cell_id"]
    assert "".join(saved["cells"][1]["outputs"][0]["data"]["text/plain"]) == "21"
