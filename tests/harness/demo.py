"""Runs the real ``jupyterhub-mcp demo`` as a subprocess, the way a newcomer runs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from mcp_local.processes import die_with_parent
from mcp_operator import endpoint

from tests.harness.jupyter import ServerAddress
from tests.harness.paths import VENV_BIN, free_port

START_TIMEOUT = 240.0  # two servers + sidecars on a loaded 2-core machine


@dataclass
class User:
    name: str
    url: str
    token: str = field(repr=False)
    mcp_json: dict[str, Any] = field(repr=False)
    # A browser-like credential for the Jupyter server itself (the MCP token does not open it).
    jupyter_token: str = field(default="", repr=False)

    @property
    def server_url(self) -> str:
        """The user's Jupyter server through the proxy (ends in /)."""
        return self.url.removesuffix(endpoint.MCP_SEGMENT)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    @property
    def server(self) -> ServerAddress:
        """The user's Jupyter server as a browser tab reaches it: through the proxy, with a token
        holding access:servers (a browser's login), not the MCP token."""
        return ServerAddress(url=self.server_url, headers={"Authorization": f"token {self.jupyter_token}"})


@dataclass
class DemoProcess:
    proc: subprocess.Popen[bytes]
    state: Path
    port: int
    hub_port: int
    proxy_api_port: int
    output: Path
    users: dict[str, User] = field(default_factory=dict)

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proxy_api(self) -> str:
        return f"http://127.0.0.1:{self.proxy_api_port}/api/routes"

    @property
    def proxy_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {(self.state / 'proxy-token').read_text().strip()}"}

    @property
    def service_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {(self.state / 'service-token').read_text().strip()}"}

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    @property
    def password(self) -> str:
        """Every demo user's password at the hub's login page (DummyAuthenticator)."""
        return (self.state / "password").read_text().strip()[:16]

    def routes(self) -> dict[str, Any]:
        return httpx.get(self.proxy_api, headers=self.proxy_headers, timeout=10).json()

    def tree(self) -> list[psutil.Process]:
        """Every process the demo runs right now (hub, proxy, servers, sidecars, kernels)."""
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while (info := self._ready_file()) is None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"demo exited with {self.proc.returncode}:\n{self.text()}\n{self.hub_log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"demo not ready after {START_TIMEOUT}s:\n{self.text()}\n{self.hub_log()}"
                )
            time.sleep(0.2)
        assert info["pid"] == self.proc.pid
        for name, entry in info["users"].items():
            config = json.loads(Path(entry["mcp_json"]).read_text())
            self.users[name] = User(
                name=name,
                url=config["url"],
                token=config["token"],
                mcp_json=config,
                jupyter_token=self.mint(name, [endpoint.server_scope(name)]),
            )

    @property
    def hub_api(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    def mint(self, user: str, scopes: list[str], expires_in: int | None = None) -> str:
        """Another token of ``user`` through the demo's own service (it holds tokens!user=<user>)."""
        body: dict[str, Any] = {"scopes": scopes, "note": "test token"}
        if expires_in is not None:
            body["expires_in"] = expires_in
        response = httpx.post(
            f"{self.hub_api}/users/{user}/tokens", headers=self.service_headers, json=body, timeout=30
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def _ready_file(self) -> dict[str, Any] | None:
        """demo.json once it is there and whole: the demo writes it in place, so a read may catch it
        empty or cut short (then it is not ready yet)."""
        try:
            return json.loads((self.state / "demo.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def hub_log(self, lines: int = 60) -> str:
        path = self.state / "jupyterhub.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def interrupt(self, timeout: float = 120.0) -> int:
        """Ctrl-C, as a terminal sends it; the demo's exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def kill_everything(self) -> None:
        """Last resort in teardown, so a failing test never leaves processes behind."""
        leftovers = self.tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def demo_args(state: Path, users: str, *extra: str) -> tuple[list[str], int, int, int]:
    port, hub_port, api_port = free_port(), free_port(), free_port()
    argv = [
        str(VENV_BIN / "jupyterhub-mcp"),
        "demo",
        "--users",
        users,
        "--state-dir",
        str(state),
        "--port",
        str(port),
        "--hub-port",
        str(hub_port),
        "--proxy-api-port",
        str(api_port),
        *extra,
    ]
    return argv, port, hub_port, api_port


@contextlib.contextmanager
def running_demo(state: Path, users: str, *extra: str) -> Iterator[DemoProcess]:
    argv, port, hub_port, api_port = demo_args(state, users, *extra)
    state.mkdir(parents=True, exist_ok=True)
    output = state.parent / f"{state.name}.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, like a terminal job
            preexec_fn=die_with_parent(),  # and gone with pytest, even if teardown never runs
        )
    demo = DemoProcess(proc, state, port, hub_port, api_port, output)
    try:
        demo.wait_ready()
        yield demo
    finally:
        try:
            demo.interrupt()
        except subprocess.TimeoutExpired:
            pass
        demo.kill_everything()
