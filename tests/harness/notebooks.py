"""Notebook files for the tests: a unique name, a notebook written as if uploaded, its sources, and
the one way to read a saved notebook back (from disk or through the Contents API).

Jupyter saves a notebook *in place* (truncate, then write; the collaboration room does it ~0.2 s
after a change, and nothing announces the write), so a read can land on a half-written file: a
JSON decode error on disk, ``400 Unreadable Notebook ... NotJSONError`` from the Contents API.
``saved_notebook`` treats exactly that answer as transient and reads again (briefly, with a
deadline); any other answer fails at once, with what it was.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.harness.jupyter import JupyterProcess, Server

Notebook = dict[str, Any]

# How long a notebook may stay half-written before that is a failure, not a save in progress.
UNREADABLE_FOR = 5.0


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}.ipynb"


def write_notebook(jupyter: JupyterProcess, path: str, sources: list[str]) -> None:
    """A notebook written to disk before any room or session knows it (like a file the user uploaded)."""
    cells = [
        {
            "id": f"c{i}",
            "cell_type": "code",
            "source": s,
            "metadata": {},
            "outputs": [],
            "execution_count": None,
        }
        for i, s in enumerate(sources)
    ]
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}
    target = jupyter.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(notebook))


def sources(notebook: Notebook) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in notebook["cells"]]


class _HalfWritten(Exception):
    """The file was read while Jupyter was rewriting it: read it again."""


async def _read_disk(root: Path, path: str) -> Notebook:
    text = (root / path).read_text()  # a missing file is no save in progress: raised as it is
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _HalfWritten(f"{root / path} is not JSON yet ({exc}; {len(text)} chars)") from exc


async def _read_contents(server: Server, path: str) -> Notebook:
    async with httpx.AsyncClient(headers=server.headers, timeout=60) as http:
        response = await http.get(f"{server.url}api/contents/{path}")
    if response.status_code == 400 and "Unreadable Notebook" in response.text:
        raise _HalfWritten(f"GET api/contents/{path}: 400 {response.text[:300]}")
    assert response.status_code == 200, f"GET api/contents/{path}: {response.status_code} {response.text}"
    return response.json()["content"]


async def saved_notebook(
    where: Path | Server,
    path: str,
    *,
    until: Callable[[Notebook], bool] | None = None,
    timeout: float = 30.0,
) -> Notebook:
    """The notebook ``path`` as saved: read from disk under ``where`` when it is a Path (the server's
    root), else through ``where``'s Contents API (anything with ``url`` and ``headers``).

    With ``until``, polls the saved file until ``until(notebook)`` holds (bounded by ``timeout``);
    without, returns the first complete read. A half-written file is read again for up to
    ``UNREADABLE_FOR`` seconds in a row; longer, or any other failure, is an error."""

    async def read() -> Notebook:
        if isinstance(where, Path):
            return await _read_disk(where, path)
        return await _read_contents(where, path)

    deadline = time.monotonic() + timeout
    unreadable_since: float | None = None
    last: Notebook | None = None
    while True:
        now = time.monotonic()
        try:
            notebook = await read()
        except _HalfWritten as exc:
            unreadable_since = unreadable_since or now
            if now - unreadable_since > UNREADABLE_FOR:
                raise AssertionError(f"{path} stayed unreadable for {UNREADABLE_FOR:.0f} s: {exc}") from exc
            await asyncio.sleep(0.05)  # the rest of a save in progress: milliseconds
            continue
        unreadable_since = None
        if until is None or until(notebook):
            return notebook
        last = notebook
        if now > deadline:
            raise AssertionError(
                f"{path} never satisfied the check within {timeout:.0f} s; last saved content: "
                f"{json.dumps(last)[:2000]}"
            )
        await asyncio.sleep(0.1)  # the room saves ~0.2 s after a change and says nothing: poll the file
