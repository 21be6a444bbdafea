"""The MCP routes in configurable-http-proxy, through its REST API.

The hub's periodic route check (``Proxy.check_routes``) deletes stale routes, but it only looks at
routes whose data carries ``"jupyterhub": true`` (``ConfigurableHTTPProxy.get_all_routes`` omits
the others). Ours never carry that key, so the hub leaves them alone; they are tagged
``"jupyterhub_mcp": true`` instead so they can be told apart.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from mcp_operator import endpoint

MARK = "jupyterhub_mcp"


class ProxyError(RuntimeError):
    """The proxy's REST API refused or could not be reached."""


class ProxyUnreachable(ProxyError):
    """Nothing answers at the proxy's API (e.g. the hub already stopped it: its routes went with it)."""


def route_path(service_prefix: str) -> str:
    """``/user/alice/`` -> ``/user/alice/mcp``: the path the sidecar itself serves (Settings.mcp_path)."""
    return endpoint.mcp_path_under(service_prefix)


class ProxyRoutes:
    def __init__(self, api_url: str, auth_token: str, timeout: float = 10.0) -> None:
        if not auth_token:
            raise ValueError("proxy auth token is empty (CONFIGPROXY_AUTH_TOKEN)")
        self.api_url = api_url.rstrip("/")
        self._headers = {"Authorization": f"token {auth_token}"}
        self._timeout = timeout

    def _url(self, path: str) -> str:
        # The hub already escaped user and server names in the prefix; keep it as it is.
        return f"{self.api_url}/api/routes{quote(path, safe='/@~%')}"

    async def _request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as http:
                response = await http.request(method, self._url(path), json=json)
        except httpx.TransportError as exc:
            raise ProxyUnreachable(f"proxy API at {self.api_url} unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 400 and not (method == "DELETE" and response.status_code == 404):
            raise ProxyError(f"proxy API {method} {path}: HTTP {response.status_code}")
        return response

    async def add(self, path: str, target: str, **data: Any) -> None:
        await self._request("POST", path, json={"target": target, MARK: True, **data})

    async def delete(self, path: str) -> None:
        await self._request("DELETE", path)

    async def all(self) -> dict[str, dict[str, Any]]:
        """Every route the proxy has, ``{path: {"target": ..., data...}}``."""
        response = await self._request("GET", "")
        return response.json()
