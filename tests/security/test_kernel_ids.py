"""A kernel id is an id, never a piece of URL (issue 15 §2): ``interrupt_kernel(kernel_id="../kernels?")``
once POSTed to ``api/kernels`` (a new kernel), ``"../contents/work?"`` to ``api/contents/work``
(a new file). Against the real sidecar and Jupyter server; what Jupyter holds is checked through its
own REST API and on disk.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.harness.jupyter import JupyterProcess
from tests.harness.mcp import call, fails
from tests.harness.notebooks import unique

pytestmark = pytest.mark.timeout(120)

ATTACKS = [
    "../kernels?",
    "../contents/work?",
    "../sessions?",
    "../kernels/x/../../kernels?#",
    "%2e%2e/kernels?",
]


async def kernel_ids(jupyter: JupyterProcess) -> set[str]:
    async with httpx.AsyncClient(headers=jupyter.headers, timeout=30) as http:
        response = await http.get(f"{jupyter.url}api/kernels")
    response.raise_for_status()
    return {k["id"] for k in response.json()}


def files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.parametrize("kernel_id", ATTACKS)
@pytest.mark.parametrize(
    ("tool", "arguments"),
    [("interrupt_kernel", {}), ("restart_kernel", {}), ("execute_code", {"code": "print('ran')"})],
)
async def test_a_kernel_id_that_is_not_an_id_reaches_no_endpoint(
    attacked_client, jupyter: JupyterProcess, tool: str, arguments: dict, kernel_id: str
) -> None:
    (jupyter.root / "work").mkdir(exist_ok=True)
    kernels_before, files_before = await kernel_ids(jupyter), files(jupyter.root)
    message = await fails(attacked_client, tool, kernel_id=kernel_id, **arguments)
    assert "is not a Jupyter kernel id" in message and "list_kernels" in message, message
    assert await kernel_ids(jupyter) == kernels_before  # no kernel started, none restarted away
    assert files(jupyter.root) == files_before  # no file created


async def test_a_real_kernel_id_still_works(attacked_client, jupyter: JupyterProcess) -> None:
    path = unique("kid")
    await call(attacked_client, "create_notebook", path=path)
    ran = await call(attacked_client, "execute_code", path=path, code="x = 1")
    kernel_id = ran.structured_content["kernel_id"]
    assert kernel_id in await kernel_ids(jupyter)
    interrupted = await call(attacked_client, "interrupt_kernel", kernel_id=kernel_id)
    assert interrupted.structured_content["kernel_id"] == kernel_id
    unknown = "0f8c2a9e-5b1d-4c3e-9a7f-2d6b8e1c4a5f"
    assert "does not exist" in await fails(attacked_client, "interrupt_kernel", kernel_id=unknown)
