"""configurable-http-proxy's REST API, thin and async: list, add and delete routes, and the
`ProxyRouter` that keeps each injected pod's route in place (`routes.build_proxy_route`).

`GET {api}/api/routes`, `POST {api}/api/routes/<path>` (body: target + data), `DELETE
{api}/api/routes/<path>`, with `Authorization: token <t>`. The token is an explicit one
(CONFIGPROXY_AUTH_TOKEN, as CHP itself reads it) or, by default, Zero to JupyterHub's Secret `hub`
(key `hub.config.ConfigurableHTTPProxy.auth_token`) in the pod's namespace, read when first needed
and again when CHP refuses it (rotated). The token never reaches a log line or an exception.

Requests are counted by verb, like the Kubernetes ones, so a pass that finds nothing to do can be
shown to write nothing to the proxy either.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from mcp_operator.metrics import PROXY_REQUESTS
from mcp_operator.policy import Policy
from mcp_operator.routes import ProxyRoute, build_proxy_route, is_ours

log = logging.getLogger(__name__)

ProxyVerb = Literal["list", "add", "delete"]
PROXY_WRITE_VERBS: frozenset[ProxyVerb] = frozenset({"add", "delete"})
ROUTES_PATH = "/api/routes"
# Requests to one CHP at a time. A pass that re-adds 1000 routes (after a CHP restart) sent them
# all at once: most waited for one of httpx's 100 connections longer than the timeout and failed,
# so each pass added only a few hundred. Queued here, only the request itself is timed.
CONCURRENT_REQUESTS = 16


class ProxyError(Exception):
    """CHP could not be reached or refused; the message names the proxy, never the token."""


class SecretReader(Protocol):
    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...


def _chp_path(path: str) -> str:
    # CHP's routespec without a trailing slash, as JupyterHub's own client sends it (`/` stays);
    # the hub already escaped user and server names in the prefix: kept as they are.
    return ROUTES_PATH + quote(path.rstrip("/") or "/", safe="/@~%")


class ProxyClient:
    """One CHP API (the one serving one namespace), with its token."""

    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        namespace: str,
        secrets: SecretReader | None,
        secret_name: str,
        secret_key: str,
        counter: Counter[str],
        timeout: float = 10.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.namespace = namespace
        self._explicit_token = token
        self._secrets = secrets
        self._secret_name, self._secret_key = secret_name, secret_key
        self._token: str | None = token
        self._counter = counter
        self._http = httpx.AsyncClient(
            base_url=self.api_url,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=CONCURRENT_REQUESTS, max_keepalive_connections=CONCURRENT_REQUESTS
            ),
        )
        self._slots = asyncio.Semaphore(CONCURRENT_REQUESTS)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _read_token(self) -> str:
        if self._explicit_token:
            return self._explicit_token
        where = f"Secret {self.namespace}/{self._secret_name} key {self._secret_key}"
        if self._secrets is None:
            raise ProxyError(f"no token for configurable-http-proxy at {self.api_url}")
        secret = await self._secrets.read_secret(self.namespace, self._secret_name)
        value = ((secret or {}).get("data") or {}).get(self._secret_key)
        if not value:
            raise ProxyError(f"no configurable-http-proxy token: {where} is missing")
        return base64.b64decode(value).decode().strip()

    async def _request(self, verb: ProxyVerb, method: str, path: str, body: Any = None) -> httpx.Response:
        for attempt in range(2):
            if self._token is None:
                self._token = await self._read_token()
            self._counter[verb] += 1
            PROXY_REQUESTS.labels(verb=verb).inc()
            try:
                async with self._slots:
                    response = await self._http.request(
                        method, path, json=body, headers={"Authorization": f"token {self._token}"}
                    )
            except httpx.TransportError as e:
                raise ProxyError(
                    f"configurable-http-proxy at {self.api_url} unreachable: {type(e).__name__} {e}"
                ) from None
            if response.status_code == 403 and attempt == 0 and not self._explicit_token:
                self._token = None  # rotated since we read it: read the Secret again, once
                continue
            if response.status_code == 404 and method == "DELETE":
                return response  # gone already
            if response.status_code >= 400:
                raise ProxyError(
                    f"configurable-http-proxy at {self.api_url} refused {method} {path}: "
                    f"HTTP {response.status_code}"
                    + (" (wrong token?)" if response.status_code == 403 else "")
                )
            return response
        raise AssertionError("unreachable")

    async def routes(self) -> dict[str, dict[str, Any]]:
        """Every route CHP holds: {path: {target, last_activity, ...data}}."""
        response = await self._request("list", "GET", ROUTES_PATH)
        table = response.json()
        return table if isinstance(table, dict) else {}

    async def add(self, route: ProxyRoute) -> None:
        await self._request("add", "POST", _chp_path(route.path), {**route.data, "target": route.target})

    async def delete(self, path: str) -> None:
        await self._request("delete", "DELETE", _chp_path(path))


class ProxyRouter:
    """Adds a pod's route when it is wired and has an IP, removes it when the pod goes or its
    policy stops routing through the proxy. Remembers what it added (pod uid -> route) so pod
    events that change nothing cost no request; the periodic pass repairs against CHP's table."""

    def __init__(
        self,
        api_url: str,
        *,
        token: str | None = None,
        secrets: SecretReader | None = None,
        secret_name: str,
        secret_key: str,
        timeout: float = 10.0,
    ) -> None:
        self.api_url = api_url
        self._token = token
        self._secrets = secrets
        self._secret_name, self._secret_key = secret_name, secret_key
        self._timeout = timeout
        self._clients: dict[str, ProxyClient] = {}
        self.requests: Counter[str] = Counter()  # verb -> count, for tests and the bench
        self.routed: dict[str, ProxyRoute] = {}  # pod uid -> the route in CHP
        self._last_error: str | None = None  # logged at warning once, until CHP answers again

    def writes(self) -> int:
        return sum(n for verb, n in self.requests.items() if verb in PROXY_WRITE_VERBS)

    def client(self, namespace: str) -> ProxyClient:
        """`{namespace}` in the URL picks each watched namespace's own proxy."""
        if namespace not in self._clients:
            self._clients[namespace] = ProxyClient(
                self.api_url.replace("{namespace}", namespace),
                self._token,
                namespace=namespace,
                secrets=self._secrets,
                secret_name=self._secret_name,
                secret_key=self._secret_key,
                counter=self.requests,
                timeout=self._timeout,
            )
        return self._clients[namespace]

    async def close(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))

    def _failed(self, what: str, error: ProxyError) -> None:
        # The same failure again (CHP still away) at debug: a pass every minute must not flood the log.
        level = logging.DEBUG if str(error) == self._last_error else logging.WARNING
        self._last_error = str(error)
        log.log(level, "%s: %s", what, error)

    def _answered(self) -> None:
        self._last_error = None

    async def ensure(self, pod: Mapping[str, Any], policy: Policy) -> bool:
        """The pod's route as its policy wants it now. False when CHP failed (the pass retries)."""
        uid = pod["metadata"]["uid"]
        route = build_proxy_route(pod, policy)
        if route is None:
            return await self.remove(pod)
        previous = self.routed.get(uid)
        if previous == route:
            return True
        if not await self.add(route):
            return False
        if previous is not None and previous.path != route.path:
            await self._delete(route.namespace, previous.path)
        log.debug("proxy route %s -> %s", route.path, route.target)
        return True

    async def remove(self, pod: Mapping[str, Any]) -> bool:
        """Delete the route this process added for the pod (the pass deletes any left over)."""
        route = self.routed.pop(pod["metadata"]["uid"], None)
        if route is None:
            return True
        if any(r.path == route.path for r in self.routed.values()):
            return True  # a newer pod of the same server holds the path now: its route stays
        return await self._delete(route.namespace, route.path)

    async def _delete(self, namespace: str, path: str) -> bool:
        try:
            await self.client(namespace).delete(path)
        except ProxyError as e:
            self._failed(f"could not delete the proxy route {path}", e)
            return False
        self._answered()
        return True

    async def table(self, namespace: str) -> dict[str, dict[str, Any]] | None:
        """CHP's routes, or None when it cannot be asked (a pass then leaves routes alone)."""
        try:
            table = await self.client(namespace).routes()
        except ProxyError as e:
            self._failed("could not list the proxy routes", e)
            return None
        self._answered()
        return table

    async def add(self, route: ProxyRoute) -> bool:
        try:
            await self.client(route.namespace).add(route)
        except ProxyError as e:
            self._failed(f"could not add the proxy route {route.path}", e)
            return False
        self._answered()
        self.routed[str(route.data.get("uid"))] = route
        return True

    async def delete(self, namespace: str, path: str, table: Mapping[str, Mapping[str, Any]]) -> bool:
        data = table.get(path) or {}
        if is_ours(data):
            self.routed.pop(str(data.get("uid")), None)
        return await self._delete(namespace, path)

    def known(self, route: ProxyRoute) -> None:
        """The pass found the route in place: remember it, so the pod's next event costs nothing."""
        self.routed[str(route.data.get("uid"))] = route
