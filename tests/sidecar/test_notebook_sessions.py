"""No global state, and no lost edits: concurrent MCP sessions, a concurrent human Y client, and
stateless clients, against a real jupyter_server + jupyter-collaboration."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import call, fails, held_client, text
from tests.harness.notebooks import saved_notebook, sources, unique
from tests.harness.ydoc import human, wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="session")
async def sidecar(jupyter: JupyterProcess) -> AsyncIterator[RunningSidecar]:
    async with sidecar_in_process(jupyter) as running:
        yield running


async def test_two_sessions_each_with_its_own_default_notebook(sidecar, jupyter) -> None:
    """50 interleaved inserts + executes from two sessions; every cell lands in its own file."""
    rounds = 50
    paths = {"alice": unique("agent-a"), "bob": unique("agent-b")}
    async with held_client(sidecar.url, sidecar.token) as a, held_client(sidecar.url, sidecar.token) as b:
        clients = {"alice": a, "bob": b}
        for name, client in clients.items():
            await call(client, "create_notebook", path=paths[name])
            await call(client, "open_notebook", path=paths[name])

        async def agent(name: str) -> None:
            client = clients[name]
            for i in range(rounds):
                # No path: each session's own default notebook must be used.
                if i % 2:
                    result = await call(client, "insert_and_execute", source=f"print('{name} {i}')")
                    assert f"{name} {i}" in text(result)
                    assert "not saved" not in text(result), text(result)
                else:
                    await call(client, "insert_cell", source=f"# {name} {i}")

        await asyncio.gather(agent("alice"), agent("bob"))
        for name, path in paths.items():
            expected = [f"print('{name} {i}')" if i % 2 else f"# {name} {i}" for i in range(rounds)]
            expected_outputs = [f"{name} {i}\n" for i in range(1, rounds, 2)]

            def outputs(nb: dict) -> list[str]:
                return ["".join(c["outputs"][0]["text"]) for c in nb["cells"] if c.get("outputs")]

            # Sources and outputs are saved by the room a moment apart: wait for both.
            await saved_notebook(
                jupyter.root,
                path,
                until=lambda nb, expected=expected, want=expected_outputs: (
                    sources(nb) == expected and outputs(nb) == want
                ),
            )


async def test_default_notebook_is_per_session_only(sidecar) -> None:
    path = unique("default")
    async with held_client(sidecar.url, sidecar.token) as a, held_client(sidecar.url, sidecar.token) as b:
        await call(a, "create_notebook", path=path)
        await call(a, "open_notebook", path=path)
        assert f"{path}: 0 cells" in text(await call(a, "read_notebook"))
        message = await fails(b, "read_notebook")
        assert "this session has no open notebook" in message and "pass path=" in message


async def test_stateless_client_must_pass_path(sidecar) -> None:
    path = unique("stateless")
    async with held_client(sidecar.url, sidecar.token, legacy=False) as client:
        await call(client, "create_notebook", path=path)
        await call(client, "insert_cell", path=path, source="x = 3")
        result = await call(client, "execute_cell", path=path, cell=0)
        assert result.structured_content["status"] == "ok"
        assert "pass path=" in await fails(client, "read_notebook")
        assert "stateless clients pass path=" in await fails(client, "open_notebook", path=path)


async def test_concurrent_human_edits_are_not_lost(sidecar, jupyter) -> None:
    path = unique("shared")
    async with held_client(sidecar.url, sidecar.token) as agent:
        await call(agent, "create_notebook", path=path)
        await call(agent, "insert_cell", path=path, source="a = 1\nb = 2\n")
        async with human(jupyter, path) as (notebook, changed):
            await wait_until(changed, lambda: notebook.cell_number == 1)

            async def human_types() -> None:
                for i in range(15):
                    notebook.append_cell({"cell_type": "markdown", "source": f"human {i}", "metadata": {}})
                    await asyncio.sleep(0)  # let the agent's calls interleave with the typing

            async def agent_works() -> None:
                for i in range(15):
                    await call(agent, "insert_cell", path=path, source=f"agent {i}", index=1)

            await asyncio.gather(human_types(), agent_works())
            # Both write into the same cell at the same time: the human appends, the agent edits.
            ytext = notebook.ycells[0]["source"]
            ytext += "c = 3\n"
            await call(agent, "edit_cell", path=path, cell=0, old="a = 1", new="a = 100")

            def merged() -> bool:
                srcs = [notebook.get_cell(i)["source"] for i in range(notebook.cell_number)]
                return (
                    {f"human {i}" for i in range(15)} <= set(srcs)
                    and {f"agent {i}" for i in range(15)} <= set(srcs)
                    and srcs[0] == "a = 100\nb = 2\nc = 3\n"
                )

            await wait_until(changed, merged)
        read = text(await call(agent, "read_notebook", path=path, limit=100, detail="full"))
        assert read.count("human ") == 15 and read.count("agent ") == 15
        assert "a = 100\nb = 2\nc = 3" in read
        saved = await saved_notebook(jupyter.root, path, until=lambda nb: len(nb["cells"]) == 31)
        assert sources(saved)[0] == "a = 100\nb = 2\nc = 3\n"


async def test_agent_edits_show_up_live_in_the_human_doc(sidecar, jupyter) -> None:
    path = unique("live")
    async with held_client(sidecar.url, sidecar.token) as agent:
        await call(agent, "create_notebook", path=path)
        async with human(jupyter, path) as (notebook, changed):
            result = await call(agent, "insert_and_execute", path=path, source="print('seen live')")
            cell_id = result.structured_content["cell_id"]

            def has_output() -> bool:
                return notebook.cell_number == 1 and bool(notebook.get_cell(0).get("outputs"))

            await wait_until(changed, has_output)
            cell = notebook.get_cell(0)
            assert cell["id"] == cell_id
            assert "seen live" in str(cell["outputs"][0]["text"])
            assert cell["execution_count"] == result.structured_content["execution_count"]


async def test_a_running_cell_shows_its_output_live(sidecar, jupyter) -> None:
    """While the cell still runs, the human's doc already has its first output."""
    path = unique("streaming")
    release = jupyter.root / f"{path}.release"  # the cell waits for it: no timing assumptions
    code = (
        f"import os, time\nprint('first', flush=True)\n"
        f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.02)\nprint('second')"
    )
    async with held_client(sidecar.url, sidecar.token) as agent:
        await call(agent, "create_notebook", path=path)
        await call(agent, "insert_cell", path=path, source=code)
        async with human(jupyter, path) as (notebook, changed):
            running = asyncio.create_task(call(agent, "execute_cell", path=path, cell=0, timeout=120))

            def shows_first() -> bool:
                return notebook.cell_number == 1 and "first" in str(notebook.get_cell(0).get("outputs"))

            await wait_until(changed, shows_first, timeout=60)
            assert not running.done(), "the first output arrived while the cell was still running"
            assert "second" not in str(notebook.get_cell(0)["outputs"])
            release.write_text("go")
            result = await running
            assert "first" in text(result) and "second" in text(result)
            await wait_until(changed, lambda: "second" in str(notebook.get_cell(0).get("outputs")))


async def test_idle_rooms_are_closed_and_reopened_on_use(jupyter) -> None:
    from mcp_sidecar.jupyter.documents import Notebooks
    from mcp_sidecar.jupyter.server import JupyterServer

    from tests.harness.notebooks import write_notebook

    path = unique("idle")
    write_notebook(jupyter, path, ["x = 1"])
    server = JupyterServer(jupyter.url, jupyter.token)
    notebooks = Notebooks(server, room_idle_timeout=0.5)
    try:
        async with notebooks.read(path) as cells:
            assert len(cells) == 1
        room = notebooks._rooms[path]
        await asyncio.wait_for(room.closed.wait(), 15)  # closed by its idle timer, nothing polled
        assert path not in notebooks._rooms
        async with notebooks.read(path) as cells:
            assert cells.all()[0]["source"] == "x = 1"
        assert notebooks._rooms[path] is not room
    finally:
        await notebooks.aclose()
        await server.aclose()


async def test_a_room_in_use_is_not_closed_as_idle(jupyter) -> None:
    from mcp_sidecar.jupyter.documents import Notebooks
    from mcp_sidecar.jupyter.server import JupyterServer

    from tests.harness.notebooks import write_notebook

    path = unique("busy")
    write_notebook(jupyter, path, ["x = 1"])
    server = JupyterServer(jupyter.url, jupyter.token)
    notebooks = Notebooks(server, room_idle_timeout=0.3)
    try:
        async with notebooks.edit(path) as cells:
            room = notebooks._rooms[path]
            await asyncio.sleep(1.0)  # a tool body outliving the idle timeout (waits on nothing else)
            assert not room.closed.is_set()
            cells.set_source(0, "x = 2")
        assert notebooks._rooms[path] is room
        await asyncio.wait_for(room.closed.wait(), 15)  # once unused, idle closes it as before
    finally:
        await notebooks.aclose()
        await server.aclose()


async def test_a_call_queued_behind_another_sessions_cell_does_not_interrupt_it(sidecar, jupyter) -> None:
    """Session B's short timeout runs out while its code waits in the kernel's queue behind session
    A's long cell: B is told it is queued, and A's cell is not interrupted. B's code runs after."""
    path = unique("queued")
    release = jupyter.root / f"{path}.release"  # A's cell waits for it: no timing assumptions
    code = (
        f"import os, time\nprint('first', flush=True)\n"
        f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.02)\nprint('second')"
    )
    timeouts = 'mcp_tool_calls_total{outcome="timeout",tool="execute_code"}'
    counted = await _metric(sidecar, timeouts)
    async with held_client(sidecar.url, sidecar.token) as a, held_client(sidecar.url, sidecar.token) as b:
        await call(a, "create_notebook", path=path)
        await call(a, "insert_cell", path=path, source=code)
        running = asyncio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if "1 output(s)" in (message or ""):
                running.set()  # A's cell printed 'first': it is running in the kernel

        arguments = {"path": path, "cell": 0, "timeout": 120}
        long = asyncio.create_task(a.call_tool("execute_cell", arguments, progress_callback=on_progress))
        await asyncio.wait_for(running.wait(), 60)
        queued = await call(b, "execute_code", path=path, code="print('after A')", timeout=1)
        assert queued.structured_content["status"] == "queued", text(queued)
        assert "queued" in text(queued) and "nothing was interrupted" in text(queued)
        assert await _metric(sidecar, timeouts) == counted + 1  # B's call: audited as a timeout
        # Queued at the early return point with time left on its own timeout: not a timeout (yet).
        tools = sidecar.app.state.tools
        tools.executor.return_after = 1.0
        try:
            early = await call(b, "execute_code", path=path, code="print('also after A')", timeout=60)
        finally:
            tools.executor.return_after = 50.0
        assert early.structured_content["status"] == "queued", text(early)
        assert await _metric(sidecar, timeouts) == counted + 1
        assert not long.done()
        release.write_text("go")
        result = await asyncio.wait_for(long, 60)
        assert not result.is_error and result.structured_content["status"] == "ok", text(result)
        assert "second" in text(result) and "KeyboardInterrupt" not in text(result)
        execution_id = queued.structured_content["execution_id"]
        final = await call(b, "get_execution", execution_id=execution_id, wait=30)
        assert final.structured_content["status"] == "ok" and "after A" in text(final)


async def test_a_queued_call_whose_kernel_is_shut_down_ends_as_kernel_lost(sidecar, jupyter) -> None:
    """The kernel is shut down through the REST API while B's code waits in its queue behind A's
    long cell: B's run ends as kernel-lost with the reason, instead of staying queued forever."""
    path = unique("queued-lost")
    release = jupyter.root / f"{path}.release"  # never written: A's cell runs until the shutdown
    code = (
        f"import os, time\nprint('first', flush=True)\n"
        f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.02)"
    )
    kernels = sidecar.app.state.tools.kernels
    kernels.queued_check_every = 0.5  # keep the test short; the check itself is what is tested
    checked = asyncio.Event()
    get_kernel = kernels.server.get_kernel

    async def spy(kernel_id: str) -> dict | None:
        # A look-up while a run waits queued on that kernel is the sidecar's liveness check.
        queued = any(e.kernel_id == kernel_id and e.status == "queued" for e in kernels.executions.values())
        found = await get_kernel(kernel_id)
        if queued and found is not None:
            checked.set()
        return found

    kernels.server.get_kernel = spy  # type: ignore[method-assign]
    async with held_client(sidecar.url, sidecar.token) as a, held_client(sidecar.url, sidecar.token) as b:
        try:
            await call(a, "create_notebook", path=path)
            await call(a, "insert_cell", path=path, source=code)
            running = asyncio.Event()

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                if "1 output(s)" in (message or ""):
                    running.set()

            arguments = {"path": path, "cell": 0, "timeout": 120}
            long = asyncio.create_task(a.call_tool("execute_cell", arguments, progress_callback=on_progress))
            await asyncio.wait_for(running.wait(), 60)
            queued = await call(b, "execute_code", path=path, code="print('after A')", timeout=1)
            assert queued.structured_content["status"] == "queued", text(queued)
            kernel_id = queued.structured_content["kernel_id"]
            # Shut it down only after the first check found it alive: the later checks are tested.
            await asyncio.wait_for(checked.wait(), 60)
            async with httpx.AsyncClient(base_url=jupyter.url, headers=jupyter.headers) as http:
                assert (await http.delete(f"api/kernels/{kernel_id}")).status_code == 204
            execution_id = queued.structured_content["execution_id"]
            lost = await b.call_tool("get_execution", {"execution_id": execution_id, "wait": 45})
            assert lost.structured_content["status"] == "kernel-lost", text(lost)
            assert lost.is_error and kernel_id in text(lost) and "restart_kernel" in text(lost)
            # Its background driver ended too (it set `saved` on its way out).
            assert kernels.executions[execution_id].saved.is_set()
            long.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await long
        finally:
            kernels.queued_check_every = 10.0
            kernels.server.get_kernel = get_kernel  # type: ignore[method-assign]


async def _metric(sidecar: RunningSidecar, sample: str) -> float:
    async with httpx.AsyncClient(timeout=30) as http:
        body = (await http.get(f"{sidecar.base}/metrics")).text
    return next((float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(sample)), 0.0)
