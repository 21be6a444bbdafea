"""Shared helpers for the notebook-tool tests (imported, not a conftest: tests/sidecar is shared)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.jupyter import JupyterProcess


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


def read_disk(jupyter: JupyterProcess, path: str) -> dict[str, Any]:
    return json.loads((Path(jupyter.root) / path).read_text())


async def on_disk(
    jupyter: JupyterProcess, path: str, check: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    """The saved notebook once ``check`` holds. The collaboration room saves ~0.2 s after a change,
    and nothing announces the write, so this waits on the file itself (bounded)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = read_disk(jupyter, path)
            if check(last):
                return last
        except (OSError, json.JSONDecodeError):
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never satisfied the check on disk; last content: {json.dumps(last)[:2000]}")


def sources(notebook: dict[str, Any]) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in notebook["cells"]]
