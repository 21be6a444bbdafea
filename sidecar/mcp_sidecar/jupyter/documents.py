"""Notebook documents: through the collaboration room when the server has one, else the Contents API.

With jupyter-collaboration every open notebook gets ONE persistent room websocket, synced into a
local pycrdt ``Doc``: reads are served from it (no request at all), edits become Y updates that
merge with what a human types in JupyterLab at the same moment. The connection is reused by all
calls and sessions and closed after it has been idle for a while.

Without collaboration, edits read the file, change it, and save it through the Contents API only
if nobody else saved it in between (``last_modified`` check); otherwise the edit is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import websockets
from jupyter_ydoc import YNotebook
from pycrdt import (
    Doc,
    YMessageType,
    YSyncMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)
from websockets.asyncio.client import ClientConnection

from .cells import Cells, ListCells, Snapshot, YCells, give_cells_ids
from .errors import JupyterError
from .paths import api_url, require_notebook
from .server import JupyterServer

log = logging.getLogger(__name__)

SYNC_TIMEOUT = 30.0


class Room:
    """One live collaboration room connection for one notebook."""

    def __init__(self, path: str, ws: ClientConnection) -> None:
        self.path = path
        self.ws = ws
        self.doc: Doc[Any] = Doc()
        self.notebook = YNotebook(self.doc)
        self._snapshot = Snapshot(self.notebook)  # what reads are served from
        self.synced = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._reader = asyncio.create_task(self._read(), name=f"room-reader:{path}")

    async def _read(self) -> None:
        try:
            await self.ws.send(create_sync_message(self.doc))
            async for message in self.ws:
                if not isinstance(message, bytes) or not message or message[0] != YMessageType.SYNC:
                    continue  # awareness and raw messages carry nothing we keep
                reply = handle_sync_message(message[1:], self.doc)
                if reply is not None:
                    await self.ws.send(reply)
                if message[1] == YSyncMessageType.SYNC_STEP2:
                    self.synced.set()
        except websockets.ConnectionClosed:
            pass
        except Exception:  # a reader must never die silently: log, then mark the room closed
            log.exception("collaboration room of %s failed", self.path)
        finally:
            code = self.ws.close_code
            self.close_reason = f"code {code}: {self.ws.close_reason}" if code else "closed"
            self.closed.set()

    def cells(self) -> YCells:
        return YCells(self.notebook, self._snapshot.cells)

    def metadata(self) -> dict[str, Any]:
        """The notebook's metadata (kernelspec, language_info, ...) as the room holds it."""
        meta = self.notebook._ymeta.to_py() or {}
        metadata = meta.get("metadata")
        return metadata if isinstance(metadata, dict) else {}

    async def wait_synced(self) -> None:
        await asyncio.wait(
            [asyncio.ensure_future(self.synced.wait()), asyncio.ensure_future(self.closed.wait())],
            timeout=SYNC_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not self.synced.is_set():
            await self.close()
            why = self.close_reason if self.closed.is_set() else f"no sync within {SYNC_TIMEOUT:.0f} s"
            raise JupyterError(f"could not open the collaboration room of {self.path!r} ({why})")

    @contextlib.asynccontextmanager
    async def edit(self) -> AsyncIterator[Cells]:
        """Apply an edit locally, then send everything it changed to the room as one update.

        No transaction is held across the caller's code: the diff against the state before
        is what gets sent, so a remote update arriving meanwhile can never deadlock the doc.
        """
        if self.closed.is_set():
            raise JupyterError(f"the collaboration room of {self.path!r} closed ({self.close_reason})")
        before = self.doc.get_state()
        yield self.cells()
        update = self.doc.get_update(before)
        try:
            await self.ws.send(create_update_message(update))
        except websockets.ConnectionClosed as exc:
            raise JupyterError(
                f"the collaboration room of {self.path!r} closed while saving an edit"
            ) from exc

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Notebooks:
    """Read and edit notebooks by path, choosing the right backend once per server."""

    def __init__(self, server: JupyterServer, *, room_idle_timeout: float = 300.0) -> None:
        self.server = server
        self.room_idle_timeout = room_idle_timeout
        self._rooms: dict[str, Room] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._idle_timers: dict[str, asyncio.TimerHandle] = {}
        self._in_use: dict[str, int] = {}  # tool bodies inside read()/edit(), per room
        self._save_locks: dict[str, asyncio.Lock] = {}

    async def collaborative(self) -> bool:
        return await self.server.has_collaboration()

    # -- public API ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def read(self, path: str) -> AsyncIterator[Cells]:
        path = require_notebook(path)
        if await self.collaborative():
            room = await self._room(path)
            with self._using(path):
                yield room.cells()
        else:
            model = await self._load(path)
            yield ListCells(model["content"])

    @contextlib.asynccontextmanager
    async def edit(self, path: str) -> AsyncIterator[Cells]:
        path = require_notebook(path)
        if await self.collaborative():
            room = await self._room(path)
            with self._using(path):
                async with room.edit() as cells:
                    yield cells
            return
        lock = self._save_locks.setdefault(path, asyncio.Lock())
        async with lock:
            model = await self._load(path)
            give_cells_ids(model["content"])  # an nbformat 4.4 file is saved as 4.5, with cell ids
            yield ListCells(model["content"])
            await self._save_checked(path, model)

    def open_room_metadata(self, path: str) -> dict[str, Any] | None:
        """The metadata of ``path`` from its room when this sidecar holds one open and synced (no
        request: the file may be mid-save), else None."""
        room = self._rooms.get(path)
        if room is None or room.closed.is_set() or not room.synced.is_set():
            return None
        return room.metadata()

    async def aclose(self) -> None:
        for timer in self._idle_timers.values():
            timer.cancel()
        self._idle_timers.clear()
        rooms = list(self._rooms.values())
        self._rooms.clear()
        for room in rooms:
            await room.close()

    # -- collaboration -----------------------------------------------------------------------------

    async def _room(self, path: str) -> Room:
        room = self._rooms.get(path)
        if room is None or room.closed.is_set():
            async with self._opening.setdefault(path, asyncio.Lock()):
                room = self._rooms.get(path)
                if room is None or room.closed.is_set():
                    room = await self._connect(path)
                    self._rooms[path] = room
        self._touch(path)
        return room

    async def _connect(self, path: str) -> Room:
        await self._check_notebook(path)  # the file id manager indexes any path, even a missing one
        file_id, session_id = await self.server.collaboration_session(path)
        room_url = api_url(
            "collaboration", "room", f"json:notebook:{file_id}", query={"sessionId": session_id}
        )
        url = self.server.ws_url(room_url)
        try:
            ws = await websockets.connect(
                url, additional_headers=self.server.auth_headers, max_size=None, open_timeout=SYNC_TIMEOUT
            )
        except (OSError, websockets.WebSocketException) as exc:
            raise JupyterError(f"cannot connect to the collaboration room of {path!r}: {exc}") from exc
        room = Room(path, ws)
        await room.wait_synced()
        return room

    def _touch(self, path: str) -> None:
        """(Re)arm the idle timer: a room nobody used for a while is closed, no polling involved."""
        if timer := self._idle_timers.pop(path, None):
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._idle_timers[path] = loop.call_later(
            self.room_idle_timeout, lambda: asyncio.ensure_future(self._close_idle(path))
        )

    @contextlib.contextmanager
    def _using(self, path: str) -> Iterator[None]:
        self._in_use[path] = self._in_use.get(path, 0) + 1
        try:
            yield
        finally:
            self._in_use[path] -= 1
            if not self._in_use[path]:
                del self._in_use[path]

    async def _close_idle(self, path: str) -> None:
        self._idle_timers.pop(path, None)
        if self._in_use.get(path):
            self._touch(path)  # a tool is inside this room right now: idle means unused
            return
        room = self._rooms.pop(path, None)
        if room is not None:
            await room.close()

    # -- contents API ------------------------------------------------------------------------------

    async def _load(self, path: str) -> dict[str, Any]:
        return await self._check_notebook(path, content=True)

    async def _check_notebook(self, path: str, *, content: bool = False) -> dict[str, Any]:
        model = await self.server.get_contents(path, content=content)
        if model.get("type") != "notebook":
            raise JupyterError(f"{path!r} is a {model.get('type')}, not a notebook")
        return model

    async def _save_checked(self, path: str, model: dict[str, Any]) -> None:
        current = await self.server.get_contents(path, content=False)
        if current.get("last_modified") != model.get("last_modified"):
            raise JupyterError(
                f"{path!r} changed on the server while this edit was being made "
                f"(saved at {current.get('last_modified')}); nothing was written: read it again and retry"
            )
        await self.server.save_contents(
            path, {"type": "notebook", "format": "json", "content": model["content"]}
        )
