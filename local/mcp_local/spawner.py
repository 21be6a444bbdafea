"""A local process spawner that starts the MCP sidecar beside each user server.

Runs inside the hub process (``c.JupyterHub.spawner_class``). ``start()`` starts the Jupyter
server as ``SimpleLocalProcessSpawner`` does (as the current OS user, home under the demo's state
dir), waits for it, launches the sidecar with the environment the webhook would have injected plus
the server's own hub environment, waits for the sidecar's ``/readyz`` and adds the proxy route
``<prefix>mcp`` -> sidecar. ``stop()`` undoes all of it, even when the server already died.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import wait_for_http_server
from mcp_operator import endpoint
from mcp_operator.policy import Policy
from traitlets import Dict, Float, Integer, List, Unicode, default

from .processes import die_with_parent, free_port, tail
from .routes import ProxyError, ProxyRoutes, ProxyUnreachable, route_path
from .sidecar_env import demo_policy, local_sidecar_environment

SIDECAR_SCRIPT = "jupyterhub-mcp-sidecar"


def _default_sidecar_cmd() -> list[str]:
    script = Path(sys.executable).with_name(SIDECAR_SCRIPT)
    if script.exists():
        return [str(script)]
    found = shutil.which(SIDECAR_SCRIPT)
    return [found] if found else [sys.executable, "-m", "mcp_sidecar.cli"]


class SidecarFailed(RuntimeError):
    """The sidecar exited or never became ready; the message carries the end of its log."""


class MCPLocalSpawner(SimpleLocalProcessSpawner):
    proxy_api_url = Unicode(
        "http://127.0.0.1:8001", config=True, help="configurable-http-proxy REST API, for the MCP route"
    )
    proxy_auth_token = Unicode(config=True, help="CONFIGPROXY_AUTH_TOKEN (default: from the env)")
    sidecar_cmd = List(Unicode(), config=True, help="how to run the sidecar")
    sidecar_ports = List(Integer(), config=True, help="ports to pick the sidecar's from; empty: any free")
    mcp_policy = Dict(config=True, help="the MCPPolicy object (as in a cluster) the sidecars run under")
    sidecar_log_template = Unicode(
        "", config=True, help="sidecar log file, {username} and {servername} expanded; empty: hub's stderr"
    )
    sidecar_ready_timeout = Float(60.0, config=True, help="seconds to wait for the sidecar's /readyz")
    sidecar_stop_timeout = Float(10.0, config=True, help="seconds between SIGTERM and SIGKILL")
    public_hosts = List(
        Unicode(), config=True, help="host:port names of the public proxy: the Host headers sidecars accept"
    )
    authorization_server = Unicode(
        "", config=True, help="issuer URL of the MCP authorization server; empty: sidecars advertise no OAuth"
    )
    hub_public_url = Unicode("", config=True, help="the hub's public URL (the proxy's), for endpoint URLs")

    sidecar_pid = Integer(0)
    sidecar_port = Integer(0)
    _sidecar: subprocess.Popen[bytes] | None = None

    @default("proxy_auth_token")
    def _default_proxy_auth_token(self) -> str:
        return os.environ.get("CONFIGPROXY_AUTH_TOKEN", "")

    @default("sidecar_cmd")
    def _default_sidecar_cmd(self) -> list[str]:
        return _default_sidecar_cmd()

    # The sidecar pid outlives a hub restart in the hub's database, so stop() can find it again.
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.sidecar_pid:
            state["sidecar_pid"] = self.sidecar_pid
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.sidecar_pid = state.get("sidecar_pid", 0)

    def make_preexec_fn(self, name: str) -> Any:
        """The parent's preexec (home dir, chdir) plus: die when the hub dies."""
        parent_preexec = super().make_preexec_fn(name)
        die = die_with_parent()

        def preexec() -> None:
            parent_preexec()
            die()

        return preexec

    @property
    def mcp_route(self) -> str:
        return route_path(self.server.base_url)

    def _routes(self) -> ProxyRoutes:
        return ProxyRoutes(self.proxy_api_url, self.proxy_auth_token)

    def _log_path(self) -> Path | None:
        if not self.sidecar_log_template:
            return None
        server = f"-{self.name}" if self.name else ""
        return Path(self.sidecar_log_template.format(username=self.user.name, servername=server))

    async def start(self) -> tuple[str, int]:
        ip, port = await super().start()
        try:
            await self._start_sidecar(ip, port)
        except BaseException:
            # The hub stops the server after a failed start; the sidecar must go with it.
            await self._stop_sidecar()
            raise
        return ip, port

    async def _start_sidecar(self, ip: str, port: int) -> None:
        jupyter_url = f"http://{ip}:{port}"
        # The sidecar's readiness is "Jupyter reachable": give the server its own start first.
        await self._wait_server_up(f"{jupyter_url}{self.server.base_url}api")
        self.sidecar_port = free_port("127.0.0.1", self.sidecar_ports or None)
        env = local_sidecar_environment(
            self.get_env(),
            Policy.from_object(self.mcp_policy or demo_policy()),
            jupyter_url=jupyter_url,
            port=self.sidecar_port,
            public_hosts=self.public_hosts,
            oauth=self._oauth_environment(),
        )
        log_path = self._log_path()
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        out = log_path.open("ab") if log_path is not None else None
        try:
            # On the hub's main thread on purpose: PR_SET_PDEATHSIG fires when the forking thread
            # exits, so a worker thread would kill the sidecar with it. Popen itself is quick.
            self._sidecar = subprocess.Popen(  # noqa: ASYNC220
                self.sidecar_cmd,
                env=env,
                stdout=out or None,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        finally:
            if out is not None:
                out.close()
        self.sidecar_pid = self._sidecar.pid
        self.log.info(
            "MCP sidecar for %s started (pid %s, port %s)",
            self._log_name,
            self.sidecar_pid,
            self.sidecar_port,
        )
        await self._wait_sidecar_ready(log_path)
        target = f"http://127.0.0.1:{self.sidecar_port}"
        await self._routes().add(self.mcp_route, target, user=self.user.name, server_name=self.name or "")
        self.log.info("MCP route %s -> %s", self.mcp_route, target)

    def _oauth_environment(self) -> dict[str, str]:
        """The endpoint's public URL and the authorization server, so a 401 points clients at it."""
        if not (self.authorization_server and self.hub_public_url):
            return {}
        url = endpoint.endpoint_url(
            self.user.name,
            self.name or "",
            route_host=None,
            hub_public_url=self.hub_public_url,
            path=self.mcp_route,
        )
        return {"MCP_RESOURCE_URL": url, "MCP_AUTHORIZATION_SERVERS": self.authorization_server}

    async def _wait_server_up(self, url: str) -> None:
        """Wait for the Jupyter server's HTTP, but give up at once if its process exits."""
        up = asyncio.ensure_future(wait_for_http_server(url, timeout=self.http_timeout))
        try:
            while not up.done():
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(
                        f"Jupyter server for {self._log_name} exited with code {self.proc.returncode} "
                        "during start (see the hub log)"
                    )
                await asyncio.wait({up}, timeout=0.2)
            up.result()
        finally:
            up.cancel()

    async def _wait_sidecar_ready(self, log_path: Path | None) -> None:
        url = f"http://127.0.0.1:{self.sidecar_port}/readyz"
        deadline = time.monotonic() + self.sidecar_ready_timeout
        last = "no answer yet"
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                assert self._sidecar is not None
                code = self._sidecar.poll()
                if code is not None:
                    raise SidecarFailed(
                        f"MCP sidecar for {self._log_name} exited with code {code} before it was ready"
                        + (f"; end of {log_path}:\n{tail(log_path, 15)}" if log_path else "")
                    )
                try:
                    response = await http.get(url)
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code} {response.text[:200]}"
                except httpx.TransportError as exc:
                    last = type(exc).__name__
                if time.monotonic() > deadline:
                    raise SidecarFailed(
                        f"MCP sidecar for {self._log_name} not ready after {self.sidecar_ready_timeout:.0f}s "
                        f"({url}: {last})"
                    )
                await asyncio.sleep(0.1)

    async def poll(self) -> int | None:
        """The server's exit status (None while it runs). A server found gone takes its sidecar
        and MCP route with it: the hub does not call stop() for a server that already exited, and
        an orphan sidecar would keep admitting the user's token."""
        status = await super().poll()
        if status is not None and (self.sidecar_pid or self._sidecar is not None):
            self.log.warning(
                "Jupyter server for %s is gone (status %s): stopping its MCP sidecar and route",
                self._log_name,
                status,
            )
            await self._stop_sidecar()
        return status

    async def stop(self, now: bool = False) -> None:
        try:
            await self._stop_sidecar()
        finally:
            await super().stop(now=now)

    async def _stop_sidecar(self) -> None:
        if self.server is not None:
            try:
                await self._routes().delete(self.mcp_route)
            except ProxyUnreachable:
                # Hub shutdown stops the proxy before the servers: the route is gone with it.
                self.log.info("proxy gone; MCP route %s went with it", self.mcp_route)
            except ProxyError as exc:
                self.log.warning("could not remove MCP route %s: %s", self.mcp_route, exc)
        proc = self._sidecar_process()
        if proc is not None:
            await asyncio.to_thread(self._terminate, proc)
            self.log.info("MCP sidecar for %s stopped (pid %s)", self._log_name, proc.pid)
        if self._sidecar is not None:
            with contextlib.suppress(Exception):
                self._sidecar.wait(timeout=0)  # reap: no zombie left in the hub
        self._sidecar = None
        self.sidecar_pid = 0
        self.sidecar_port = 0

    def _sidecar_process(self) -> psutil.Process | None:
        if not self.sidecar_pid:
            return None
        try:
            proc = psutil.Process(self.sidecar_pid)
            # After a hub restart the pid comes from the database: make sure it is still ours.
            if self._sidecar is None and not any(
                SIDECAR_SCRIPT in part or "mcp_sidecar" in part for part in proc.cmdline()
            ):
                return None
            return proc
        except psutil.Error:
            return None

    def _terminate(self, proc: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.sidecar_stop_timeout)
            except psutil.TimeoutExpired:
                self.log.warning("MCP sidecar pid %s ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait(self.sidecar_stop_timeout)
