"""Jupyter URLs and kernel ids (mcp_sidecar.jupyter.paths). Pure."""

from __future__ import annotations

import pytest
from mcp_sidecar.jupyter.errors import JupyterError
from mcp_sidecar.jupyter.paths import api_url, kernel_url, require_kernel_id

KERNEL = "0f8c2a9e-5b1d-4c3e-9a7f-2d6b8e1c4a5f"


def test_segments_are_quoted_whole() -> None:
    assert api_url("kernels", "a/b?c#d%") == "api/kernels/a%2Fb%3Fc%23d%25"
    room = api_url("collaboration", "room", "json:notebook:x y")
    assert room == "api/collaboration/room/json:notebook:x%20y"


def test_paths_are_quoted_per_part_and_queries_encoded() -> None:
    assert api_url("contents", path="my dir/what?#.ipynb") == "api/contents/my%20dir/what%3F%23.ipynb"
    assert api_url("contents", path="") == "api/contents/"
    assert kernel_url(KERNEL, "channels", query={"session_id": "a&b"}) == (
        f"api/kernels/{KERNEL}/channels?session_id=a%26b"
    )


@pytest.mark.parametrize("segments", [("kernels", ".."), ("kernels", "."), ("", "x")])
def test_dot_and_empty_segments_are_refused(segments: tuple[str, ...]) -> None:
    with pytest.raises(JupyterError, match="refusing to build a Jupyter URL"):
        api_url(*segments)
    with pytest.raises(JupyterError):
        api_url("contents", path="a/../b")


@pytest.mark.parametrize("bad", ["../kernels?", "", KERNEL + "/x", KERNEL[:-1], "x" * 36, None, 5])
def test_kernel_ids_must_be_uuids(bad: object) -> None:
    with pytest.raises(JupyterError, match=r"is not a Jupyter kernel id .*list_kernels"):
        require_kernel_id(bad)


def test_a_kernel_id_passes_in_either_case() -> None:
    assert require_kernel_id(KERNEL) == KERNEL
    assert require_kernel_id(KERNEL.upper()) == KERNEL.upper()
