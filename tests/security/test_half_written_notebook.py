"""A notebook read mid-save never reaches an agent as "HTTP 400 Unreadable Notebook ... NotJSONError"
(issue 15 §2: 2 of 40 first executions under load). The kernel lookup read the file through the
Contents API while the collaboration room rewrote it in place.

- With a room open in the sidecar, the kernel lookup reads the notebook's kernelspec from the room:
  the file is left truncated (a save that never finishes) and the first execution still starts the
  notebook's kernel.
- Without one, the Contents read retries that one answer briefly. Simulated deterministically: a
  writer rewrites the file in place the way Jupyter saves (truncate, write, with a 30 ms gap in the
  middle where the file is not JSON), every 0.2 s as a room busy with edits does, against the real
  jupyter_server, while the sidecar's Contents read (the one the kernel lookup uses) reads it; a raw
  read of the same file proves the race is real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mcp_sidecar.jupyter.server import JupyterServer

from tests.harness.jupyter import JupyterProcess
from tests.harness.mcp import call, text
from tests.harness.notebooks import unique, write_notebook

pytestmark = pytest.mark.timeout(120)

SAVE_GAP = 0.03  # s the file is half-written in each simulated save: a slow disk, a loaded box
SAVE_EVERY = 0.2  # s between saves: the room saves ~0.2 s after each change (document_save_delay)


async def save_in_place_forever(target: Path, stop: asyncio.Event) -> int:
    """Rewrite ``target`` in place like Jupyter's save (truncate, then write) until ``stop``;
    the file holds half its JSON for ``SAVE_GAP`` s each time. Returns how many saves it made."""
    body = target.read_text()
    saves = 0
    while not stop.is_set():
        with target.open("w") as file:
            file.write(body[: len(body) // 2])
            file.flush()
            await asyncio.sleep(SAVE_GAP)
            file.write(body[len(body) // 2 :])
        saves += 1
        await asyncio.sleep(SAVE_EVERY)
    return saves


@pytest.fixture
async def server(jupyter: JupyterProcess) -> AsyncIterator[JupyterServer]:
    contents = JupyterServer(jupyter.url, jupyter.token)
    yield contents
    await contents.aclose()


async def test_a_contents_read_during_an_in_place_save_is_retried(
    jupyter: JupyterProcess, server: JupyterServer
) -> None:
    path = unique("midsave")
    write_notebook(jupyter, path, ["print(1)"] * 50)
    stop = asyncio.Event()
    writer = asyncio.create_task(save_in_place_forever(jupyter.root / path, stop))
    raw_unreadable = 0

    async def read_raw_until_stopped() -> None:
        """Plain reads of the same file, on their own clock: they must see the 400."""
        nonlocal raw_unreadable
        async with httpx.AsyncClient(headers=jupyter.headers, timeout=30) as http:
            while not stop.is_set():
                raw = await http.get(f"{jupyter.url}api/contents/{path}")
                raw_unreadable += raw.status_code == 400 and "Unreadable Notebook" in raw.text
                await asyncio.sleep(0.007)

    raw_reader = asyncio.create_task(read_raw_until_stopped())
    try:
        reads, until = 0, asyncio.get_running_loop().time() + 4.0  # ~17 saves
        while reads < 60 or asyncio.get_running_loop().time() < until:
            reads += 1
            model = await server.get_contents(path)  # raises on the 400 without the retry
            assert model["type"] == "notebook" and len(model["content"]["cells"]) == 50
    finally:
        stop.set()
        saves = await writer
        await raw_reader
    assert saves > 10
    assert raw_unreadable > 0, "the simulated saves never produced the 400: this test proves nothing"


@pytest.fixture
async def kernels_after(jupyter: JupyterProcess) -> AsyncIterator[list[str]]:
    started: list[str] = []
    yield started
    async with httpx.AsyncClient(headers=jupyter.headers, timeout=30) as http:
        for kernel_id in started:
            await http.delete(f"{jupyter.url}api/kernels/{kernel_id}")


async def test_the_kernel_lookup_reads_the_kernelspec_from_the_open_room(
    attacked_client, jupyter: JupyterProcess, kernels_after: list[str]
) -> None:
    path = unique("roommeta")
    await call(attacked_client, "create_notebook", path=path, kernel_name="python3")  # opens the room
    await call(attacked_client, "insert_cell", path=path, source="print('in the room')")
    await asyncio.sleep(1.0)  # the room's own save is done
    target = jupyter.root / path
    whole = target.read_text()
    assert json.loads(whole)["metadata"]["kernelspec"]["name"] == "python3"
    target.write_text(whole[: len(whole) // 2])  # a save in progress that does not finish
    try:
        result = await attacked_client.call_tool("execute_code", {"path": path, "code": "print(6 * 7)"})
    finally:
        target.write_text(whole)
    assert not result.is_error and "42" in text(result), text(result)
    kernels_after.append(result.structured_content["kernel_id"])
