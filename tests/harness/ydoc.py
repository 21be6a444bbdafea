"""The "human": a second, independent Y client in a notebook's collaboration room (what an open
JupyterLab tab is), and the event-driven wait on what it sees."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import websockets
from jupyter_ydoc import YNotebook
from pycrdt import Doc, YMessageType, YSyncMessageType, create_sync_message, create_update_message
from pycrdt import handle_sync_message as apply_sync

from tests.harness.jupyter import Server


@contextlib.asynccontextmanager
async def human(jupyter: Server, path: str) -> AsyncIterator[tuple[YNotebook, asyncio.Queue[None]]]:
    """A second, independent Y client in the notebook's room (what a JupyterLab tab is).

    Yields the notebook and a queue that gets an item whenever a remote update arrived.
    """
    async with httpx.AsyncClient(base_url=jupyter.url, headers=jupyter.headers) as http:
        session = (
            await http.put(f"api/collaboration/session/{path}", json={"format": "json", "type": "notebook"})
        ).json()
    url = (
        f"ws{jupyter.url[4:]}api/collaboration/room/json:notebook:{session['fileId']}"
        f"?sessionId={session['sessionId']}"
    )
    doc = Doc()
    notebook = YNotebook(doc)
    changed: asyncio.Queue[None] = asyncio.Queue()
    synced = asyncio.Event()
    async with websockets.connect(url, additional_headers=jupyter.headers, max_size=None) as ws:

        async def read() -> None:
            async for message in ws:
                if message[0] != YMessageType.SYNC:
                    continue
                reply = apply_sync(message[1:], doc)
                if reply is not None:
                    await ws.send(reply)
                if message[1] == YSyncMessageType.SYNC_STEP2:
                    synced.set()
                changed.put_nowait(None)

        reader = asyncio.create_task(read())
        await ws.send(create_sync_message(doc))
        await asyncio.wait_for(synced.wait(), 30)

        sending: set[asyncio.Task[None]] = set()

        def send_local(update: object) -> None:
            task = asyncio.ensure_future(ws.send(create_update_message(update.update)))  # type: ignore[attr-defined]
            sending.add(task)
            task.add_done_callback(sending.discard)

        subscription = doc.observe(lambda event: send_local(event) if event.update != b"\x00\x00" else None)
        try:
            yield notebook, changed
        finally:
            doc.unobserve(subscription)
            reader.cancel()


async def wait_until(changed: asyncio.Queue[None], condition, timeout: float = 30.0) -> None:
    """Until ``condition()`` holds, re-checked on every remote update (event-driven)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await changed.get()
