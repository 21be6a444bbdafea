"""Idle MCP sessions expire and their number is capped (issue 15 §2, memory), against the real
sidecar (in process) in front of the real jupyter_server and its kernels.

Before: nothing the sidecar configured bounded sessions (5 070 idle ones took it to 310 MiB), and
the per-session state (open_notebook's default path) was never forgotten with a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import INITIALIZE, MCP_HEADERS
from tests.harness.raw_mcp import RawSession, open_raw_session, result_text

pytestmark = [pytest.mark.timeout(300)]

LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
UNKNOWN = "unknown or expired session: initialize a new session"
IDLE_TIMEOUT = 1.5


@pytest.fixture(scope="module")
async def capped(jupyter: JupyterProcess) -> AsyncIterator[RunningSidecar]:
    async with sidecar_in_process(jupyter, MCP_MAX_SESSIONS="3") as running:
        yield running


@pytest.fixture(scope="module")
async def short_lived(jupyter: JupyterProcess) -> AsyncIterator[RunningSidecar]:
    async with sidecar_in_process(jupyter, MCP_SESSION_IDLE_TIMEOUT=str(IDLE_TIMEOUT)) as running:
        yield running


def defaults(sidecar: RunningSidecar) -> Any:
    """The sidecar's per-session default notebooks (what open_notebook sets)."""
    return sidecar.app.state.tools.sessions  # type: ignore[attr-defined]


def assert_gone(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["message"] == UNKNOWN, response.text


async def until(what: str, probe: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_at_the_cap_the_oldest_idle_session_goes_and_a_busy_one_stays(
    capped: RunningSidecar, jupyter: JupyterProcess
) -> None:
    tag = uuid.uuid4().hex[:8]
    path = f"capped-{tag}.ipynb"
    busy = await open_raw_session(capped)  # the oldest session of all: mid-execution below
    await busy.call("create_notebook", {"path": path})
    oldest_idle = await open_raw_session(capped)
    await oldest_idle.call("open_notebook", {"path": path})
    assert defaults(capped).get(oldest_idle.session_id) == path
    newer: RawSession = await open_raw_session(capped)

    started = jupyter.root / f"started-{tag}"
    code = f"open({str(started)!r}, 'w').close()\nimport time\ntime.sleep(4)\nprint('survived')"
    running = asyncio.create_task(busy.call("execute_code", {"path": path, "code": code, "timeout": 60}))
    await until("the busy session's cell to start", started.exists)

    fourth = await open_raw_session(capped)  # over the cap of 3: one session must go
    assert_gone(await oldest_idle.post(LIST_TOOLS))
    assert defaults(capped).get(oldest_idle.session_id) is None  # its default notebook went with it
    for alive in (newer, fourth):
        assert (await alive.post(LIST_TOOLS)).status_code == 200
    assert "survived" in result_text(await running)  # the busy one was never cut off
    assert (await busy.post(LIST_TOOLS)).status_code == 200
    assert capped.app.state.session_manager.open_sessions == 3  # type: ignore[attr-defined]


async def test_when_every_session_is_busy_a_new_one_is_refused_and_none_is_cut_off(
    capped: RunningSidecar,
) -> None:
    """Open GET streams make a session busy: with all three busy, the fourth gets 503."""
    async with contextlib.AsyncExitStack() as streams:
        sessions = []
        for _ in range(3):
            session = await open_raw_session(capped)
            headers = {
                "Accept": "text/event-stream",
                "Mcp-Session-Id": session.session_id,
                "Mcp-Protocol-Version": "2025-06-18",
                **capped.headers,
            }
            http = await streams.enter_async_context(httpx.AsyncClient(timeout=60))
            stream = await streams.enter_async_context(http.stream("GET", capped.url, headers=headers))
            assert stream.status_code == 200
            sessions.append(session)
        async with httpx.AsyncClient(timeout=30) as http:
            refused = await http.post(capped.url, json=INITIALIZE, headers={**MCP_HEADERS, **capped.headers})
        assert refused.status_code == 503, refused.text
        for session in sessions:
            assert (await session.post(LIST_TOOLS)).status_code == 200


def test_the_oldest_idle_session_is_the_one_with_the_earliest_idle_deadline() -> None:
    from mcp_sidecar.sessions import oldest_idle

    assert oldest_idle({"a": 5.0, "busy": None, "c": 3.0}) == "c"
    assert oldest_idle({"busy": None, "also-busy": None}) is None


async def test_an_idle_session_expires_with_what_it_held(short_lived: RunningSidecar) -> None:
    path = f"idle-{uuid.uuid4().hex[:8]}.ipynb"
    session = await open_raw_session(short_lived)
    await session.call("create_notebook", {"path": path})
    await session.call("open_notebook", {"path": path})
    assert defaults(short_lived).get(session.session_id) == path
    await asyncio.sleep(IDLE_TIMEOUT + 1.5)
    assert_gone(await session.post(LIST_TOOLS))
    assert defaults(short_lived).get(session.session_id) is None
    assert len(short_lived.app.state.session_owners) == 0  # type: ignore[attr-defined]
