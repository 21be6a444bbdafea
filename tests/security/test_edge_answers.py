"""Answers at the edges say what really happened (issue 15 §2, "misleading answers").

- Code that ignores SIGINT, under a timeout, once answered "still running, call get_execution", as
  if nothing had been tried: the answer now says the interrupt did not stop it, that it is still
  running, and what to do (restart_kernel, or get_execution).
- A ``restart_kernel`` from another MCP session during a run once gave the runner a bare
  ``KeyboardInterrupt`` (Jupyter interrupts a kernel before restarting it): the run now ends as
  ``kernel-lost``, saying the kernel was restarted and its state is lost.

Against the real sidecar, jupyter_server and ipykernel; two real MCP SDK sessions where two are
involved.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.harness.jupyter import JupyterProcess, RunningSidecar
from tests.harness.mcp import call, held_client, text
from tests.harness.notebooks import unique

pytestmark = pytest.mark.timeout(180)

IGNORES_SIGINT = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(40)"


@pytest.fixture
async def notebook(attacked_client, jupyter: JupyterProcess) -> AsyncIterator[tuple[str, str]]:
    """A notebook of its own and its kernel (shut down afterwards: it may still be sleeping)."""
    path = unique("edge")
    await call(attacked_client, "create_notebook", path=path)
    ran = await call(attacked_client, "execute_code", path=path, code="x = 1")
    kernel_id = ran.structured_content["kernel_id"]
    yield path, kernel_id
    async with httpx.AsyncClient(headers=jupyter.headers, timeout=30) as http:
        await http.delete(f"{jupyter.url}api/kernels/{kernel_id}")


async def test_an_interrupt_the_code_ignores_is_reported_as_failed(
    attacked_client, notebook: tuple[str, str]
) -> None:
    path, kernel_id = notebook
    result = await attacked_client.call_tool(
        "execute_code", {"path": path, "code": IGNORES_SIGINT, "timeout": 2}
    )
    answer = text(result)
    assert result.structured_content["status"] == "running", answer
    assert "interrupt did not stop it" in answer and "still running" in answer, answer
    assert "SIGINT" in answer and "restart_kernel" in answer and "get_execution" in answer, answer
    assert "lost" in answer  # what restart_kernel costs

    execution_id = result.structured_content["execution_id"]
    followed = await call(attacked_client, "get_execution", execution_id=execution_id, wait=0)
    assert "interrupt did not stop it" in text(followed), text(followed)

    await call(attacked_client, "restart_kernel", path=path)
    after = await attacked_client.call_tool("get_execution", {"execution_id": execution_id, "wait": 5})
    assert after.structured_content["status"] == "kernel-lost", text(after)
    assert f"kernel {kernel_id} was restarted" in text(after), text(after)


async def test_a_restart_from_another_session_tells_the_runner_its_state_is_lost(
    attacked_client, attacked: RunningSidecar, notebook: tuple[str, str]
) -> None:
    path, kernel_id = notebook
    run = asyncio.create_task(
        attacked_client.call_tool(
            "execute_code", {"path": path, "code": "import time\ntime.sleep(20)", "timeout": 5}
        )
    )
    async with held_client(attacked.url, attacked.token) as other:
        for _ in range(100):  # until the kernel runs the sleep
            listed = await call(other, "list_kernels")
            state = next(k["state"] for k in listed.structured_content["kernels"] if k["id"] == kernel_id)
            if state == "busy":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        await call(other, "restart_kernel", path=path)
    result = await run
    answer = text(result)
    assert result.is_error and result.structured_content["status"] == "kernel-lost", answer
    assert f"kernel {kernel_id} was restarted" in answer and "another session" in answer, answer
    assert "lost" in answer, answer
