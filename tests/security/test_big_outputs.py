"""An image over the answer cap is not held once saved, and never decoded (issue 15 §2: one 41 MB
PNG took a fresh sidecar to 685 MiB). Real kernel output through the real sidecar: the image is
saved into its notebook cell (the notebook keeps it), the answer leaves it out with its size, and
the run the sidecar keeps for get_execution holds only the note, not the base64. The image's data
is not valid base64 at all, so any decoding of it would fail the call.

Memory figures themselves are measured in bench/memory_bench.py, not asserted here.
"""

from __future__ import annotations

import pytest

from tests.harness.jupyter import JupyterProcess, RunningSidecar
from tests.harness.mcp import call, text
from tests.harness.notebooks import saved_notebook, unique

pytestmark = pytest.mark.timeout(120)

SIZE = 3_000_000  # characters of "image"; the sidecar's image cap is 1 MiB
NOT_BASE64 = (
    "from IPython.display import display\n"
    f"display({{'image/png': '!*' * {SIZE // 2}, 'text/plain': 'a picture'}}, raw=True)\n"
    "print('shown')"
)


async def test_an_over_cap_image_is_left_out_and_not_kept(
    attacked_client, attacked: RunningSidecar, jupyter: JupyterProcess
) -> None:
    path = unique("bigimage")
    await call(attacked_client, "create_notebook", path=path)
    result = await call(attacked_client, "insert_and_execute", path=path, source=NOT_BASE64)
    answer = text(result)
    assert "shown" in answer and "a picture" in answer, answer
    assert "image image/png of" in answer and "left out" in answer, answer
    assert all(block.type == "text" for block in result.content)

    kept = attacked.app.state.tools.kernels.executions[result.structured_content["execution_id"]]  # type: ignore[attr-defined]
    held = sum(len(str(v)) for o in kept.outputs for v in (o.get("data") or {}).values())
    assert held < 10_000, f"the kept run still holds {held} characters of outputs"

    again = await call(attacked_client, "get_execution", execution_id=kept.id, wait=0)
    assert "image image/png of" in text(again) and "left out" in text(again), text(again)

    notebook = await saved_notebook(jupyter.root, path, until=lambda nb: bool(nb["cells"][-1]["outputs"]))
    images = [
        o["data"]["image/png"] for o in notebook["cells"][-1]["outputs"] if "image/png" in o.get("data", {})
    ]
    assert images and len("".join(images)) == SIZE  # the notebook itself keeps the whole image
