"""Every notebook tool, through the official MCP client over real HTTP, against a real
jupyter_server + ipykernel + jupyter-collaboration. Files are checked on disk, where the room saves them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import call, fails, held_client, mcp_client, text
from tests.harness.notebooks import saved_notebook, sources, unique, write_notebook
from tests.harness.raw_mcp import audit_lines, metric

pytestmark = pytest.mark.timeout(120)

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="session")
async def sidecar(
    jupyter: JupyterProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSidecar]:
    audit = tmp_path_factory.mktemp("tools-audit") / "audit.jsonl"
    async with sidecar_in_process(jupyter, MCP_OUTPUT_MAX_CHARS="2000", MCP_AUDIT_LOG=str(audit)) as running:
        yield running


@pytest.fixture(scope="session")
async def client(sidecar: RunningSidecar):
    async with held_client(sidecar.url, sidecar.token) as c:
        yield c


@pytest.fixture
async def notebook(client) -> str:
    path = unique("nb")
    await call(client, "create_notebook", path=path)
    return path


async def test_tools_are_listed_with_annotations(client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    expected = {
        "list_files",
        "create_notebook",
        "read_notebook",
        "read_cell",
        "insert_cell",
        "overwrite_cell",
        "edit_cell",
        "delete_cells",
        "move_cell",
        "clear_outputs",
        "execute_cell",
        "insert_and_execute",
        "execute_code",
        "list_kernels",
        "interrupt_kernel",
        "restart_kernel",
        "open_notebook",
        "get_execution",
    }
    assert expected <= set(tools)
    assert tools["read_notebook"].annotations.read_only_hint is True
    assert tools["delete_cells"].annotations.destructive_hint is True
    for name in ("execute_cell", "insert_and_execute", "execute_code", "interrupt_kernel", "restart_kernel"):
        hints = tools[name].annotations
        assert hints.destructive_hint is True and hints.read_only_hint is False, name
    assert "path" in tools["execute_cell"].input_schema["properties"]


async def test_create_insert_read_edit_roundtrip_lands_on_disk(client, jupyter, notebook) -> None:
    first = await call(client, "insert_cell", path=notebook, source="a = 1")
    assert first.structured_content["index"] == 0
    cell_id = first.structured_content["cell_id"]
    await call(client, "insert_cell", path=notebook, source="# Title", cell_type="markdown", index=0)
    await call(client, "insert_cell", path=notebook, source="b = 2\nc = 3")
    await call(client, "overwrite_cell", path=notebook, cell=cell_id, source="a = 10")
    await call(client, "edit_cell", path=notebook, cell=2, old="c = 3", new="c = 30")
    await call(client, "move_cell", path=notebook, cell=0, to_index=2)

    brief = text(await call(client, "read_notebook", path=notebook))
    assert f"{notebook}: 3 cells" in brief
    assert "b = 2  … (+1 lines)" in brief
    full = text(await call(client, "read_notebook", path=notebook, detail="full"))
    assert "c = 30" in full
    one = await call(client, "read_cell", path=notebook, cell=cell_id)
    assert "a = 10" in text(one) and one.structured_content["index"] == 0

    saved = await saved_notebook(
        jupyter.root, notebook, until=lambda nb: sources(nb) == ["a = 10", "b = 2\nc = 30", "# Title"]
    )
    assert [c["cell_type"] for c in saved["cells"]] == ["code", "code", "markdown"]


async def test_edit_cell_refuses_ambiguous_or_missing_text(client, notebook) -> None:
    await call(client, "insert_cell", path=notebook, source="x = 1\nx = 1\n")
    assert "occurs 2 times" in await fails(client, "edit_cell", path=notebook, cell=0, old="x = 1", new="y")
    assert "not found" in await fails(client, "edit_cell", path=notebook, cell=0, old="zzz", new="y")
    done = await call(client, "edit_cell", path=notebook, cell=0, old="x = 1", new="y = 2", replace_all=True)
    assert done.structured_content["replacements"] == 2
    assert "y = 2\ny = 2" in text(await call(client, "read_cell", path=notebook, cell=0))


async def test_delete_cells_is_all_or_nothing(client, jupyter, notebook) -> None:
    for s in ("one", "two", "three", "four"):
        await call(client, "insert_cell", path=notebook, source=s)
    message = await fails(client, "delete_cells", path=notebook, cells=[0, 9])
    assert "out of range" in message
    assert "4 cells" in text(await call(client, "read_notebook", path=notebook))
    await call(client, "delete_cells", path=notebook, cells=[0, -1])
    await saved_notebook(jupyter.root, notebook, until=lambda nb: sources(nb) == ["two", "three"])


async def test_execute_writes_outputs_into_the_cell(client, jupyter, notebook) -> None:
    await call(client, "insert_cell", path=notebook, source="import sys\nprint('to out')\n21 * 2")
    result = await call(client, "execute_cell", path=notebook, cell=0)
    assert "to out" in text(result) and "42" in text(result)
    assert result.structured_content["status"] == "ok"
    count = result.structured_content["execution_count"]
    assert count and count >= 1

    saved = await saved_notebook(
        jupyter.root, notebook, until=lambda nb: len(nb["cells"][0].get("outputs", [])) == 2
    )
    cell = saved["cells"][0]
    assert cell["execution_count"] == count
    assert "".join(cell["outputs"][1]["data"]["text/plain"]) == "42"

    await call(client, "clear_outputs", path=notebook, cell=0)
    await saved_notebook(jupyter.root, notebook, until=lambda nb: nb["cells"][0]["outputs"] == [])


async def test_insert_and_execute_and_errors_read_clean(client, notebook) -> None:
    result = await call(client, "insert_and_execute", path=notebook, source="1/0")
    body = text(result)
    assert body.startswith("ZeroDivisionError: division by zero")
    assert "\x1b[" not in body
    assert result.structured_content["status"] == "error"
    assert result.structured_content["cell_id"]


async def test_execute_code_is_scratch_and_shares_the_notebook_kernel(client, jupyter, notebook) -> None:
    await call(client, "insert_and_execute", path=notebook, source="shared = 'from the notebook'")
    result = await call(client, "execute_code", path=notebook, code="print(shared)")
    assert "from the notebook" in text(result)
    await asyncio.sleep(0)  # nothing to wait for: the scratch run never touches the document
    assert sources(await saved_notebook(jupyter.root, notebook)) in ([], ["shared = 'from the notebook'"])
    assert "1 cells" in text(await call(client, "read_notebook", path=notebook))
    by_kernel = await call(
        client, "execute_code", kernel_id=result.structured_content["kernel_id"], code="print(shared)"
    )
    assert "from the notebook" in text(by_kernel)


async def test_adopts_the_kernel_of_an_existing_session(client, jupyter) -> None:
    path = unique("adopt")
    write_notebook(jupyter, path, ["print(marker)"])
    async with httpx.AsyncClient(base_url=jupyter.url, headers=jupyter.headers) as http:
        session = (
            await http.post(
                "api/sessions",
                json={"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}},
            )
        ).json()
        kernel_id = session["kernel"]["id"]
        # As if the user ran something in JupyterLab: state only that kernel has.
        result = await call(client, "execute_code", kernel_id=kernel_id, code="marker = 'lab state'")
        assert result.structured_content["kernel_id"] == kernel_id
        run = await call(client, "execute_cell", path=path, cell=0)
        assert run.structured_content["kernel_id"] == kernel_id
        assert "lab state" in text(run)
        sessions = [s for s in (await http.get("api/sessions")).json() if s["path"] == path]
        assert len(sessions) == 1, "no duplicate session/kernel was started"


async def test_huge_output_is_capped_and_readable_in_pieces(client, notebook) -> None:
    result = await call(
        client, "insert_and_execute", path=notebook, source="print('START' + 'x' * 10**6 + 'END')"
    )
    body = text(result)
    assert len(body) < 2_500, len(body)  # MCP_OUTPUT_MAX_CHARS=2000 plus the note
    assert body.startswith("START") and body.rstrip().endswith("END")
    assert "characters left out" in body and "output_offset=1333" in body
    cell_id = result.structured_content["cell_id"]
    more = await call(client, "read_cell", path=notebook, cell=cell_id, output_offset=1333)
    piece = text(more)
    assert piece.startswith(">>> output:\n" + "x" * 100) and len(piece) < 2_500
    assert "output_offset=3333" in piece


async def test_png_comes_back_as_image_content(client, notebook) -> None:
    code = (
        "import base64\nfrom IPython.display import Image, display\n"
        f"display(Image(data=base64.b64decode('{PNG_1PX}')))\nprint('after')"
    )
    result = await call(client, "insert_and_execute", path=notebook, source=code)
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1
    assert images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(b"\x89PNG")
    assert "after" in text(result)
    read = await call(client, "read_cell", path=notebook, cell=-1)
    assert [c.type for c in read.content].count("image") == 1


async def test_timeout_interrupts_and_returns_partial_output(client, sidecar, notebook) -> None:
    timeouts = 'mcp_tool_calls_total{outcome="timeout",tool="insert_and_execute"}'
    counted_before = await metric(sidecar, timeouts)
    started = time.monotonic()
    result = await client.call_tool(
        "insert_and_execute",
        {
            "path": notebook,
            "timeout": 1.5,
            "source": "import time\nprint('before sleep', flush=True)\ntime.sleep(60)\nprint('ne' + 'ver')",
        },
    )
    elapsed = time.monotonic() - started
    body = text(result)
    assert elapsed < 20
    assert "before sleep" in body and "never" not in body
    assert "timed out after 2 s" in body or "timed out after 1 s" in body
    assert "interrupted" in body
    assert result.structured_content["status"] == "timeout"
    # Audited and counted as a timeout, not "ok" (the answer itself is a normal one).
    record = [r for r in audit_lines(sidecar) if r["tool"] == "insert_and_execute"][-1]
    assert record["outcome"] == "timeout" and "interrupted" in record["error"]
    assert record["cells"] == [result.structured_content["cell_id"]]
    assert await metric(sidecar, timeouts) == counted_before + 1
    # Reading the timed-out run again is an ordinary read: audited and counted "ok", not a timeout.
    read_timeouts = 'mcp_tool_calls_total{outcome="timeout",tool="get_execution"}'
    read_before = await metric(sidecar, read_timeouts)
    execution_id = result.structured_content["execution_id"]
    for offset in (0, 5):
        again = await call(client, "get_execution", execution_id=execution_id, output_offset=offset, wait=0)
        assert again.structured_content["status"] == "timeout"
    reads = [r for r in audit_lines(sidecar) if r["tool"] == "get_execution"][-2:]
    assert [r["outcome"] for r in reads] == ["ok", "ok"], reads
    assert await metric(sidecar, read_timeouts) == read_before
    # The kernel is free again at once: it was interrupted, not left running.
    quick = await call(client, "execute_code", path=notebook, code="print('free')", timeout=10)
    assert "free" in text(quick)


async def test_progress_notifications_while_a_cell_runs(client, notebook) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    code = "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.5)"
    result = await client.call_tool(
        "insert_and_execute", {"path": notebook, "source": code}, progress_callback=on_progress
    )
    assert not result.is_error
    assert len(seen) >= 2, seen
    assert all("running" in (m or "") for _, m in seen)
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)


async def test_long_cell_returns_execution_id_then_get_execution(client, sidecar, notebook) -> None:
    tools = sidecar.app.state.tools
    tools.executor.return_after = 1.0
    try:
        code = "import time\nprint('begun', flush=True)\ntime.sleep(3)\nprint('finished')"
        first = await call(client, "insert_and_execute", path=notebook, source=code, timeout=30)
        assert first.structured_content["status"] == "running"
        assert "begun" in text(first) and "get_execution" in text(first)
        execution_id = first.structured_content["execution_id"]
    finally:
        tools.executor.return_after = 50.0
    final = await call(client, "get_execution", execution_id=execution_id, wait=30)
    assert final.structured_content["status"] == "ok"
    assert "finished" in text(final)
    assert "no execution" in await fails(client, "get_execution", execution_id="nope")


async def test_client_cancellation_interrupts_the_kernel(client, sidecar, notebook) -> None:
    started = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    call_task = asyncio.create_task(
        client.call_tool(
            "insert_and_execute",
            {"path": notebook, "source": "import time\ntime.sleep(60)", "timeout": 120},
            progress_callback=on_progress,
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    call_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call_task
    t0 = time.monotonic()
    after = await call(client, "execute_code", path=notebook, code="print('back')", timeout=30)
    assert "back" in text(after)
    assert time.monotonic() - t0 < 15, "the sleeping cell was interrupted, not waited out"


async def test_dead_and_vanished_kernels_are_reported_not_replaced(client, jupyter, notebook) -> None:
    await call(client, "insert_and_execute", path=notebook, source="state = 1")
    died = await client.call_tool("execute_code", {"path": notebook, "code": "import os; os._exit(1)"})
    assert died.is_error
    assert "died while this was running" in text(died) and "lost" in text(died)
    lost = await call(client, "execute_code", path=notebook, code="print(state)")
    assert "NameError" in text(lost), "the restarted kernel really lost its state"

    kernel_id = lost.structured_content["kernel_id"]
    async with httpx.AsyncClient(base_url=jupyter.url, headers=jupyter.headers) as http:
        assert (await http.delete(f"api/kernels/{kernel_id}")).status_code == 204
    gone = await fails(client, "execute_code", path=notebook, code="1")
    assert kernel_id in gone and "restart_kernel" in gone and "state is lost" in gone

    restarted = await call(client, "restart_kernel", path=notebook)
    assert restarted.structured_content["kernel_id"] != kernel_id
    ok = await call(client, "execute_code", path=notebook, code="print('fresh')")
    assert "fresh" in text(ok)


async def test_restart_and_interrupt_and_list_kernels(client, notebook) -> None:
    await call(client, "insert_and_execute", path=notebook, source="kept = 5")
    listed = await call(client, "list_kernels")
    mine = [k for k in listed.structured_content["kernels"] if k["notebook"] == notebook]
    assert len(mine) == 1
    await call(client, "interrupt_kernel", path=notebook)
    restarted = await call(client, "restart_kernel", path=notebook)
    assert restarted.structured_content["kernel_id"] == mine[0]["id"]
    assert "NameError" in text(await call(client, "execute_code", path=notebook, code="kept"))


async def test_interrupt_kernel_stops_a_running_cell(client, notebook) -> None:
    started = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    running = asyncio.create_task(
        client.call_tool(
            "insert_and_execute",
            {"path": notebook, "source": "import time\ntime.sleep(60)", "timeout": 120},
            progress_callback=on_progress,
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    await call(client, "interrupt_kernel", path=notebook)
    result = await asyncio.wait_for(running, 30)
    assert "KeyboardInterrupt" in text(result)
    assert result.structured_content["status"] == "error"


async def test_list_files_depth_pattern_and_paging(client, jupyter) -> None:
    folder = unique("dir").removesuffix(".ipynb")
    for name in ("a.ipynb", "b.ipynb", "sub/c.ipynb", "notes.txt"):
        (jupyter.root / folder / name).parent.mkdir(parents=True, exist_ok=True)
        (jupyter.root / folder / name).write_text("{}" if name.endswith("txt") else "")
    shallow = await call(client, "list_files", path=folder)
    assert [e["path"].split("/", 1)[1] for e in shallow.structured_content["entries"]] == [
        "sub",
        "a.ipynb",
        "b.ipynb",
        "notes.txt",
    ]
    deep = await call(client, "list_files", path=folder, depth=2, pattern="*.ipynb")
    assert sorted(e["path"].split("/", 1)[1] for e in deep.structured_content["entries"]) == [
        "a.ipynb",
        "b.ipynb",
        "sub/c.ipynb",
    ]
    page = await call(client, "list_files", path=folder, limit=2)
    assert "call again with offset=2" in text(page)
    assert "not a folder" in await fails(client, "list_files", path=f"{folder}/notes.txt")


async def test_bad_input_is_a_clear_error_and_changes_nothing(client, jupyter, notebook) -> None:
    await call(client, "insert_cell", path=notebook, source="keep me")
    (jupyter.root / "plain.txt").write_text("hello")
    cases = [
        ("read_notebook", {"path": "../outside.ipynb"}, "escapes the Jupyter server root"),
        ("insert_cell", {"path": "/etc/x.ipynb", "source": "x"}, "is absolute"),
        ("read_notebook", {"path": "missing.ipynb"}, "does not exist"),
        ("read_notebook", {"path": "plain.txt"}, "not a notebook"),
        ("read_cell", {"path": notebook, "cell": 5}, "out of range"),
        ("overwrite_cell", {"path": notebook, "cell": "no-such-id", "source": "x"}, "no cell with id"),
        ("insert_cell", {"path": notebook, "source": "x", "index": 7}, "out of range"),
        ("insert_cell", {"path": notebook, "source": "x", "cell_type": "python"}, "cell_type"),
        ("move_cell", {"path": notebook, "cell": 0, "to_index": 3}, "out of range"),
        ("execute_cell", {"path": notebook, "cell": 0, "timeout": -1}, "positive"),
        ("create_notebook", {"path": notebook}, "already exists"),
        ("read_notebook", {}, "pass path="),
        ("read_cell", {"path": notebook, "cell": [1]}, "cell"),
        ("read_cell", {"path": notebook, "cell": 0, "output_offset": -5}, "output_offset must be >= 0"),
        ("list_files", {"path": "../"}, "escapes the Jupyter server root"),
    ]
    for tool, arguments, message in cases:
        got = await fails(client, tool, **arguments)
        assert message in got, f"{tool}{arguments}: {got}"
    saved = await saved_notebook(jupyter.root, notebook, until=lambda nb: len(nb["cells"]) == 1)
    assert sources(saved) == ["keep me"]
    assert not (jupyter.root.parent / "outside.ipynb").exists()


async def test_markdown_cell_does_not_run(client, notebook) -> None:
    await call(client, "insert_cell", path=notebook, source="# md", cell_type="markdown")
    assert "only code cells run" in await fails(client, "execute_cell", path=notebook, cell=0)


async def test_one_room_connection_per_notebook_reused(client, sidecar, notebook) -> None:
    rooms = sidecar.app.state.tools.notebooks
    await call(client, "insert_cell", path=notebook, source="1")
    room = rooms._rooms[notebook]
    for _ in range(5):
        await call(client, "read_notebook", path=notebook)
        await call(client, "insert_cell", path=notebook, source="2")
    async with mcp_client(sidecar.url, sidecar.token) as other:
        await call(other, "read_notebook", path=notebook)
    assert rooms._rooms[notebook] is room and not room.closed.is_set()


async def sessions_of(jupyter: JupyterProcess, path: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=jupyter.url, headers=jupyter.headers) as http:
        return [s for s in (await http.get("api/sessions")).json() if s["path"] == path]


async def test_a_missing_notebook_gets_no_kernel(client, jupyter) -> None:
    """A typo in `path` is an error naming it; no session or kernel is started for it."""
    path = unique("typo")
    for tool, arguments in [
        ("execute_code", {"path": path, "code": "1"}),
        ("interrupt_kernel", {"path": path}),
        ("restart_kernel", {"path": path}),
        ("insert_and_execute", {"path": path, "source": "1"}),
    ]:
        message = await fails(client, tool, **arguments)
        assert "no such notebook" in message and path in message, f"{tool}: {message}"
    assert await sessions_of(jupyter, path) == []
    assert not (jupyter.root / path).exists()


async def test_interrupt_kernel_never_starts_a_kernel(client, jupyter) -> None:
    path = unique("idle")
    write_notebook(jupyter, path, ["1"])
    message = await fails(client, "interrupt_kernel", path=path)
    assert "has no running kernel" in message
    assert await sessions_of(jupyter, path) == []
    await call(client, "execute_code", path=path, code="1")  # now it has one, and it can be interrupted
    await call(client, "interrupt_kernel", path=path)


def install_kernelspec(jupyter: JupyterProcess, name: str) -> None:
    """A second Python kernelspec in the server's data dir, so the chosen kernel is observable."""
    folder = jupyter.root.parent / "home" / "data" / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": f"Python ({name})", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))


@pytest.mark.parametrize("kernel_name", ["python3", "mcp-alt"])
async def test_create_notebook_kernel_name_is_the_kernel_that_runs_it(client, jupyter, kernel_name) -> None:
    install_kernelspec(jupyter, "mcp-alt")
    path = unique(f"kernel-{kernel_name}")
    await call(client, "create_notebook", path=path, kernel_name=kernel_name)
    spec = (await saved_notebook(jupyter.root, path))["metadata"]["kernelspec"]
    assert spec["name"] == kernel_name and spec["language"] == "python"
    ran = await call(client, "insert_and_execute", path=path, source="import sys; print(sys.version_info[0])")
    assert "3" in text(ran)
    [session] = await sessions_of(jupyter, path)
    assert session["kernel"]["id"] == ran.structured_content["kernel_id"]
    assert session["kernel"]["name"] == kernel_name


async def test_an_unknown_kernel_name_is_a_clear_error_and_changes_nothing(client, jupyter) -> None:
    path = unique("nokernel")
    message = await fails(client, "create_notebook", path=path, kernel_name="no-such-kernel")
    assert "'no-such-kernel' is not installed" in message and "python3" in message
    assert not (jupyter.root / path).exists()
    # A notebook that names a kernel this server lacks (written elsewhere): said so, nothing inserted.
    write_notebook(jupyter, path, ["x = 1"])
    notebook = await saved_notebook(jupyter.root, path)
    notebook["metadata"]["kernelspec"] = {"name": "no-such-kernel", "display_name": "gone"}
    (jupyter.root / path).write_text(json.dumps(notebook))
    for tool, arguments in [("execute_cell", {"cell": 0}), ("insert_and_execute", {"source": "y = 2"})]:
        message = await fails(client, tool, path=path, **arguments)
        assert "'no-such-kernel' (metadata.kernelspec.name) is not installed" in message, message
    # insert_and_execute looked for its kernel before inserting: a retry cannot duplicate the cell.
    assert "1 cells" in text(await call(client, "read_notebook", path=path))
    assert await sessions_of(jupyter, path) == []


async def test_nbformat_4_4_notebook_outputs_are_saved(client, jupyter) -> None:
    """Cells without ids (nbformat 4.4): the room gives them ids, so outputs land in the cell.
    (Without collaboration: test_notebook_contents_mode.py.)"""
    path = unique("v4-4-room")
    cells = [{"cell_type": "code", "source": "6 * 7", "metadata": {}, "outputs": [], "execution_count": None}]
    (jupyter.root / path).write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells})
    )
    run = await call(client, "execute_cell", path=path, cell=0)
    assert "42" in text(run) and "not saved" not in text(run) and run.structured_content["cell_id"]
    saved = await saved_notebook(jupyter.root, path, until=lambda nb: bool(nb["cells"][0].get("outputs")))
    # (The room keeps its ids in the document; it saves a 4.4 file as 4.4, without them.)
    assert "".join(saved["cells"][0]["outputs"][0]["data"]["text/plain"]) == "42"
