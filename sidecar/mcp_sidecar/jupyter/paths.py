"""Notebook paths as the Contents API wants them, kernel ids, and every Jupyter URL the sidecar
builds. Pure.

Paths are relative to the Jupyter server root, ``/``-separated. Anything that could escape the
root (``..``, absolute paths, drive letters, NUL) is refused here, before any request is made,
so a bad path can never reach the server in an unexpected form. Kernel ids must look like the
UUIDs Jupyter gives kernels: ``interrupt_kernel(kernel_id="../kernels?")`` once started a kernel.
``api_url`` is the one place URLs are made (REST and websocket): each segment is quoted whole, so
no ``/``, ``?`` or ``#`` inside an argument can change which endpoint is called.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from .errors import JupyterError


def normalize_path(path: str | None, *, allow_root: bool = False) -> str:
    """``path`` as a clean relative API path, or a ``JupyterError`` saying what is wrong with it."""
    if path is None:
        raise JupyterError("path is required")
    if not isinstance(path, str):
        raise JupyterError(f"path must be a string, got {type(path).__name__}")
    if "\x00" in path:
        raise JupyterError("path contains a NUL character")
    raw = path.strip().replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise JupyterError(
            f"path {path!r} is absolute: give a path relative to the Jupyter server root, e.g. 'work/a.ipynb'"
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise JupyterError(f"path {path!r} escapes the Jupyter server root ('..' is not allowed)")
    clean = "/".join(parts)
    if not clean and not allow_root:
        raise JupyterError("path is empty: name a file relative to the Jupyter server root")
    return clean


KERNEL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def require_kernel_id(kernel_id: object) -> str:
    """``kernel_id`` if it has the shape of a Jupyter kernel id (a UUID), else a clear error."""
    if isinstance(kernel_id, str) and KERNEL_ID.fullmatch(kernel_id):
        return kernel_id
    raise JupyterError(
        f"kernel_id {str(kernel_id)[:80]!r} is not a Jupyter kernel id (a UUID such as "
        "'0f8c2a9e-5b1d-4c3e-9a7f-2d6b8e1c4a5f'): list_kernels shows the running ones, "
        "or pass path= to use a notebook's kernel"
    )


def api_url(*segments: str, path: str | None = None, query: Mapping[str, str] | None = None) -> str:
    """``api/<segment>/...[/<path>][?<query>]``, relative to the server's base URL.

    Each segment is quoted whole; ``path`` is a file path (``normalize_path``) quoted part by part.
    A ``.``/``..`` segment would still be resolved by the client, so it is refused outright."""
    parts = ["api", *(quote(segment, safe=":") for segment in segments)]
    if path is not None:
        parts.extend(quote(part, safe="") for part in path.split("/"))  # "" (the root) ends in "/"
    if "" in parts[:-1] or any(part in (".", "..") for part in parts):
        raise JupyterError(f"refusing to build a Jupyter URL from {segments!r} and path {path!r}")
    url = "/".join(parts)
    return f"{url}?{urlencode(query)}" if query else url


def kernel_url(kernel_id: str, *rest: str, query: Mapping[str, str] | None = None) -> str:
    """``api/kernels/<id>/...``; the id must be a kernel id (``require_kernel_id``)."""
    return api_url("kernels", require_kernel_id(kernel_id), *rest, query=query)


def require_notebook(path: str) -> str:
    clean = normalize_path(path)
    if not clean.endswith(".ipynb"):
        raise JupyterError(f"{clean!r} is not a notebook (notebook paths end in .ipynb)")
    return clean
