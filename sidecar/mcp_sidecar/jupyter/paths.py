"""Notebook paths as the Contents API wants them. Pure.

Paths are relative to the Jupyter server root, ``/``-separated. Anything that could escape the
root (``..``, absolute paths, drive letters, NUL) is refused here, before any request is made,
so a bad path can never reach the server in an unexpected form.
"""

from __future__ import annotations

from urllib.parse import quote

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


def api_path(path: str) -> str:
    """URL-quoted for use after ``api/contents/``."""
    return quote(path, safe="/")


def require_notebook(path: str) -> str:
    clean = normalize_path(path)
    if not clean.endswith(".ipynb"):
        raise JupyterError(f"{clean!r} is not a notebook (notebook paths end in .ipynb)")
    return clean
