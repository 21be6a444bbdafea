"""Local mode leaves no orphan when a user's Jupyter server dies (issue 15 §2): its sidecar and its
``/user/<name>/mcp`` route used to stay (initialize 200, still admitting the token). The real
``jupyterhub-mcp demo`` (hub, configurable-http-proxy, servers, sidecars): the server process is
killed, and once the hub's poll (every 30 s, JupyterHub's default) sees it gone, the sidecar process
has exited and the route answers no more.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.harness.demo import DemoProcess, running_demo
from tests.harness.mcp import INITIALIZE, MCP_HEADERS

pytestmark = pytest.mark.timeout(420)

POLL_WITHIN = 90.0  # the hub polls every 30 s; on a loaded box give it three rounds


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    with running_demo(tmp_path_factory.mktemp("orphans") / "demo", "carol") as running:
        yield running


def processes_of(demo: DemoProcess, user: str) -> tuple[psutil.Process, psutil.Process]:
    """(the user's Jupyter server, their sidecar) among the demo's processes."""
    server = sidecar = None
    for proc in demo.tree():
        try:
            cmdline, env = " ".join(proc.cmdline()), proc.environ()
        except psutil.Error:
            continue
        if env.get("JUPYTERHUB_USER") != user:
            continue
        if "sidecar" in cmdline or "mcp_sidecar" in cmdline:
            sidecar = proc
        elif "ipykernel" not in cmdline and ("singleuser" in cmdline or "jupyter" in cmdline):
            server = server or proc
    assert server is not None and sidecar is not None, [p.cmdline() for p in demo.tree()]
    return server, sidecar


def initialize_status(url: str, token: str) -> int:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    return httpx.post(url, json=INITIALIZE, headers=headers, timeout=10).status_code


def test_a_dead_server_takes_its_sidecar_and_route_with_it(demo: DemoProcess) -> None:
    carol = demo.users["carol"]
    assert initialize_status(carol.url, carol.token) == 200
    server, sidecar = processes_of(demo, "carol")
    route = "/user/carol/mcp"
    assert route in demo.routes()

    os.kill(server.pid, signal.SIGKILL)  # the server dies without a word (OOM killer, a crash)
    deadline = time.monotonic() + POLL_WITHIN
    while time.monotonic() < deadline and (sidecar.is_running() or route in demo.routes()):
        time.sleep(1)
    alive = sidecar.is_running() and sidecar.status() != psutil.STATUS_ZOMBIE
    assert not alive, f"sidecar {sidecar.pid} still runs {POLL_WITHIN:.0f} s after its server died"
    assert route not in demo.routes(), demo.routes()
    assert initialize_status(carol.url, carol.token) != 200
    log = Path(demo.state / "jupyterhub.log").read_text(errors="replace")
    assert "stopping its MCP sidecar and route" in log
