"""The one reader of saved notebooks reads a half-written file again, and only that."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.harness import notebooks
from tests.harness.jupyter import ServerAddress
from tests.harness.notebooks import saved_notebook

WHOLE = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}


async def test_a_file_caught_mid_save_is_read_again(tmp_path: Path) -> None:
    target = tmp_path / "a.ipynb"
    target.write_text(json.dumps(WHOLE)[:20])  # what a reader sees while Jupyter rewrites in place

    async def finish_the_save() -> None:
        await asyncio.sleep(0.3)
        target.write_text(json.dumps(WHOLE))

    saving = asyncio.create_task(finish_the_save())
    assert await saved_notebook(tmp_path, "a.ipynb") == WHOLE
    await saving


async def test_a_file_that_stays_broken_fails_clearly(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(notebooks, "UNREADABLE_FOR", 0.3)
    (tmp_path / "b.ipynb").write_text("{")
    with pytest.raises(AssertionError, match=r"b.ipynb stayed unreadable .* is not JSON yet"):
        await saved_notebook(tmp_path, "b.ipynb")
    with pytest.raises(FileNotFoundError):  # a missing file is no save in progress
        await saved_notebook(tmp_path, "missing.ipynb")


async def test_until_polls_and_names_what_was_last_saved(tmp_path: Path) -> None:
    (tmp_path / "c.ipynb").write_text(json.dumps(WHOLE))
    with pytest.raises(AssertionError, match=r"c.ipynb never satisfied the check .*\"cells\": \[\]"):
        await saved_notebook(tmp_path, "c.ipynb", until=lambda nb: len(nb["cells"]) == 1, timeout=0.3)


@pytest.fixture
def contents_api() -> Iterator[tuple[ServerAddress, list[int]]]:
    """A stand-in Contents API whose answers are queued: 400 Unreadable Notebook, then 200, ..."""
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = answers.pop(0) if answers else 200
            body = (
                b"Unreadable Notebook: /srv/d.ipynb NotJSONError('')"
                if status == 400
                else json.dumps({"content": WHOLE}).encode()
            )
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ServerAddress(url=f"http://127.0.0.1:{server.server_port}/user/a/", headers={}), answers
    finally:
        server.shutdown()
        server.server_close()


async def test_unreadable_notebook_from_the_contents_api_is_read_again(contents_api) -> None:
    server, answers = contents_api
    answers.extend([400, 400])
    assert await saved_notebook(server, "d.ipynb") == WHOLE
    assert answers == []
    answers.append(403)  # anything else fails at once, with what it was
    with pytest.raises(AssertionError, match=r"GET api/contents/d\.ipynb: 403"):
        await saved_notebook(server, "d.ipynb")
