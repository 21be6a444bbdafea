"""The REST side of the user's Jupyter server: one shared HTTP client, token auth, clear errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from .errors import JupyterError
from .paths import api_url, kernel_url

# Jupyter saves a notebook in place (truncate, then write), the collaboration room ~0.2 s after
# every change, so a read can land on a half-written file and get "400 Unreadable Notebook ...
# NotJSONError". A save takes milliseconds: that answer is read again a few times before it counts.
HALF_WRITTEN_TRIES = 4
HALF_WRITTEN_PAUSE = 0.05  # s between tries


class JupyterServer:
    """One ``httpx.AsyncClient`` for all REST calls; websocket URLs and headers for the rest."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._token = token
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=self.auth_headers, timeout=timeout)
        self._collaboration: bool | None = None

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self._token}"} if self._token else {}

    def ws_url(self, path: str) -> str:
        return "ws" + self.base_url[len("http") :] + path

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self, method: str, url: str, *, what: str, passthrough: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """A REST call; transport failures and 5xx become a ``JupyterError`` naming ``what`` failed.

        Statuses in ``passthrough`` are returned for the caller to explain."""
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise JupyterError(f"cannot reach the Jupyter server for {what}: {exc!r}") from exc
        if response.status_code in (401, 403):
            raise JupyterError(
                f"the Jupyter server refused {what} (HTTP {response.status_code}): check its token"
            )
        if response.status_code >= 500 and response.status_code not in passthrough:
            raise JupyterError(
                f"the Jupyter server failed {what}: HTTP {response.status_code} {_reason(response)}"
            )
        return response

    async def ready(self, timeout: float) -> tuple[bool, str]:  # noqa: ASYNC109
        """Whether the server answers an authenticated API call within ``timeout`` seconds."""
        try:
            response = await self.http.get(api_url("status"), timeout=timeout)
        except httpx.HTTPError as exc:
            return False, f"Jupyter server unreachable: {type(exc).__name__}"
        if response.status_code != 200:
            return False, f"Jupyter server answered HTTP {response.status_code}"
        return True, "ok"

    # -- contents ------------------------------------------------------------------------------

    async def get_contents(
        self, path: str, *, content: bool = True, what: str | None = None, missing: str | None = None
    ) -> dict[str, Any]:
        for attempt in range(HALF_WRITTEN_TRIES):
            if attempt:
                await asyncio.sleep(HALF_WRITTEN_PAUSE)
            response = await self.request(
                "GET",
                api_url("contents", path=path),
                params={"content": "1" if content else "0"},
                what=what or f"reading {path!r}",
            )
            if not is_half_written(response.status_code, response.text):
                break
        if response.status_code == 404:
            raise JupyterError(missing or f"{path!r} does not exist on the Jupyter server")
        _raise_for(response, f"reading {path!r}")
        return response.json()

    async def save_contents(self, path: str, model: dict[str, Any]) -> dict[str, Any]:
        response = await self.request(
            "PUT", api_url("contents", path=path), json=model, what=f"saving {path!r}"
        )
        _raise_for(response, f"saving {path!r}")
        return response.json()

    async def exists(self, path: str) -> bool:
        response = await self.request(
            "GET", api_url("contents", path=path), params={"content": "0"}, what=f"checking {path!r}"
        )
        return response.status_code == 200

    # -- collaboration -------------------------------------------------------------------------

    async def has_collaboration(self) -> bool:
        """Whether jupyter-collaboration serves rooms here (asked once; a server does not change)."""
        if self._collaboration is None:
            response = await self.request(
                "PUT",
                api_url("collaboration", "session", ".mcp-probe"),
                json={"format": "json", "type": "notebook"},
                what="probing for jupyter-collaboration",
            )
            # The handler answers even for a missing file (201, or a JSON 404 in older versions);
            # without the extension the server's HTML 404 page answers instead.
            is_api = response.headers.get("content-type", "").startswith("application/json")
            self._collaboration = response.status_code in (200, 201) or (
                response.status_code == 404 and is_api
            )
        return self._collaboration

    async def collaboration_session(self, path: str) -> tuple[str, str]:
        """(fileId, sessionId) of the collaboration room of ``path``."""
        response = await self.request(
            "PUT",
            api_url("collaboration", "session", path=path),
            json={"format": "json", "type": "notebook"},
            what=f"opening the collaboration room of {path!r}",
        )
        if response.status_code == 404:
            raise JupyterError(f"{path!r} does not exist on the Jupyter server")
        _raise_for(response, f"opening the collaboration room of {path!r}")
        body = response.json()
        return body["fileId"], body["sessionId"]

    # -- sessions and kernels ------------------------------------------------------------------

    async def list_sessions(self) -> list[dict[str, Any]]:
        response = await self.request("GET", api_url("sessions"), what="listing sessions")
        _raise_for(response, "listing sessions")
        return response.json()

    async def create_session(self, path: str, kernel_name: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook"}
        body["kernel"] = {"name": kernel_name} if kernel_name else {}
        # jupyter_server answers 501 for a kernel name it has no kernelspec for.
        response = await self.request(
            "POST", api_url("sessions"), json=body, what=f"starting a kernel for {path!r}", passthrough=(501,)
        )
        if response.status_code == 501:
            specs = await self.kernelspecs()
            raise JupyterError(
                f"cannot start a kernel for {path!r}: its kernel {kernel_name!r} (metadata.kernelspec.name) "
                f"is not installed on this Jupyter server (installed: {', '.join(sorted(specs)) or 'none'})"
            )
        _raise_for(response, f"starting a kernel for {path!r}")
        return response.json()

    async def kernelspecs(self) -> dict[str, dict[str, Any]]:
        """Installed kernelspecs by name (each the ``spec`` of ``GET /api/kernelspecs``)."""
        response = await self.request("GET", api_url("kernelspecs"), what="listing kernelspecs")
        _raise_for(response, "listing kernelspecs")
        found = response.json().get("kernelspecs") or {}
        return {name: (entry.get("spec") or {}) for name, entry in found.items()}

    async def list_kernels(self) -> list[dict[str, Any]]:
        response = await self.request("GET", api_url("kernels"), what="listing kernels")
        _raise_for(response, "listing kernels")
        return response.json()

    async def get_kernel(self, kernel_id: str) -> dict[str, Any] | None:
        response = await self.request("GET", kernel_url(kernel_id), what=f"looking up kernel {kernel_id}")
        if response.status_code == 404:
            return None
        _raise_for(response, f"looking up kernel {kernel_id}")
        return response.json()

    async def interrupt_kernel(self, kernel_id: str) -> None:
        response = await self.request(
            "POST", kernel_url(kernel_id, "interrupt"), what=f"interrupting kernel {kernel_id}"
        )
        if response.status_code == 404:
            raise JupyterError(f"kernel {kernel_id} does not exist (it was shut down or culled)")
        _raise_for(response, f"interrupting kernel {kernel_id}")

    async def restart_kernel(self, kernel_id: str) -> dict[str, Any]:
        response = await self.request(
            "POST", kernel_url(kernel_id, "restart"), what=f"restarting kernel {kernel_id}", timeout=120
        )
        if response.status_code == 404:
            raise JupyterError(f"kernel {kernel_id} does not exist (it was shut down or culled)")
        _raise_for(response, f"restarting kernel {kernel_id}")
        return response.json()


def is_half_written(status: int, body: str) -> bool:
    """Whether a Contents API answer says the notebook file was read mid-save (transient)."""
    return status == 400 and "Unreadable Notebook" in body


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        return response.text[:200]
    return str(body.get("message") or body.get("reason") or "")[:300]


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        raise JupyterError(f"{what} failed: HTTP {response.status_code} {_reason(response)}".rstrip())
