"""Servers stopping and starting take their sidecars and routes along; Ctrl-C leaves nothing behind;
a taken port gets a clear message. Each test here runs its own demo (one user, to stay light)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from mcp_local.processes import check_port_free
from mcp_operator import endpoint

from tests.harness.demo import DemoProcess, demo_args, running_demo
from tests.harness.mcp import call, fails, mcp_client, text
from tests.harness.paths import eventually

pytestmark = pytest.mark.e2e


def _cmdlines(procs: list[psutil.Process]) -> list[str]:
    lines = []
    for proc in procs:
        try:
            lines.append(" ".join(proc.cmdline()))
        except psutil.Error:
            pass
    return lines


def _sidecars(demo: DemoProcess) -> list[psutil.Process]:
    found = []
    for proc in demo.tree():
        try:
            if "jupyterhub-mcp-sidecar" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


POLICY = """\
apiVersion: mcp.jupyterhub.org/v1alpha1
kind: MCPPolicy
metadata: {name: classroom}
spec:
  tools: {mode: edit, deny: [delete_cells]}
  execution: {outputMaxChars: 1234}
"""


@pytest.fixture(scope="module")
def carol_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    """One user under an MCPPolicy manifest, as an admin would write it for a cluster."""
    state = tmp_path_factory.mktemp("lifecycle") / "demo"
    policy = state.parent / "policy.yaml"
    policy.write_text(POLICY)
    with running_demo(state, "carol", "--policy", str(policy)) as demo:
        yield demo


async def test_the_policy_reaches_the_sidecar(carol_demo: DemoProcess) -> None:
    carol = carol_demo.users["carol"]
    async with mcp_client(carol.url, carol.token) as agent:
        await call(agent, "create_notebook", path="p.ipynb")
        await call(agent, "insert_cell", path="p.ipynb", source="1 + 1")  # edit: allowed
        offered = {tool.name for tool in (await agent.list_tools()).tools}
        assert {"read_notebook", "insert_cell", "edit_cell"} <= offered
        assert not {"execute_code", "insert_and_execute", "delete_cells"} & offered  # above the mode / denied
        assert "execute_code" in await fails(agent, "execute_code", path="p.ipynb", code="1")
    (sidecar,) = _sidecars(carol_demo)
    env = sidecar.environ()
    policy_env = (env["MCP_MODE"], env["MCP_DENY_TOOLS"], env["MCP_OUTPUT_MAX_CHARS"])
    assert policy_env == ("edit", "delete_cells", "1234")


def test_server_stop_and_start_take_sidecar_and_route_along(carol_demo: DemoProcess) -> None:
    demo = carol_demo
    hub = f"http://127.0.0.1:{demo.hub_port}/hub/api/users/carol/server"
    sidecar_pids = {p.pid for p in _sidecars(demo)}
    assert len(sidecar_pids) == 1

    assert httpx.delete(hub, headers=demo.service_headers, timeout=60).status_code in (202, 204)
    eventually("the MCP route to go", lambda: endpoint.mcp_path("carol") not in demo.routes(), timeout=90)
    eventually("the sidecar to stop", lambda: not any(map(psutil.pid_exists, sidecar_pids)), timeout=90)
    assert httpx.post(demo.public_url + endpoint.mcp_path("carol"), timeout=30).status_code != 200

    def server_gone() -> bool:
        model = httpx.get(hub.removesuffix("/server"), headers=demo.service_headers, timeout=30).json()
        return "" not in model.get("servers", {})

    eventually("the hub to finish stopping the server", server_gone, timeout=90)
    assert httpx.post(hub, headers=demo.service_headers, timeout=60).status_code in (201, 202)
    eventually("the MCP route to come back", lambda: endpoint.mcp_path("carol") in demo.routes(), timeout=90)
    second = demo.routes()[endpoint.mcp_path("carol")]["target"]
    assert httpx.get(f"{second}/readyz", timeout=30).json()["ready"] is True
    assert {p.pid for p in _sidecars(demo)}.isdisjoint(sidecar_pids), "a new sidecar for the new server"


async def test_a_named_server_gets_its_own_endpoint_and_scope(carol_demo: DemoProcess) -> None:
    demo = carol_demo
    hub = f"http://127.0.0.1:{demo.hub_port}/hub/api/users/carol"
    started = httpx.post(f"{hub}/servers/lab", headers=demo.service_headers, json={}, timeout=60)
    assert started.status_code in (201, 202), started.text
    eventually("the named server's MCP route", lambda: "/user/carol/lab/mcp" in demo.routes(), timeout=90)
    lab_url = f"{demo.public_url}/user/carol/lab/mcp"
    minted = httpx.post(
        f"{hub}/tokens",
        headers=demo.service_headers,
        json={"scopes": ["access:servers!server=carol/lab"], "expires_in": 600, "note": "e2e"},
        timeout=30,
    )
    assert minted.status_code == 201, minted.text
    lab_token = minted.json()["token"]
    async with mcp_client(lab_url, lab_token) as agent:
        await call(agent, "create_notebook", path="named.ipynb")
    default = demo.users["carol"]
    for url, token in ((lab_url, default.token), (default.url, lab_token)):
        headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}"}
        response = httpx.post(url, json={}, headers=headers, timeout=30)
        assert response.status_code == 403, f"{url}: {response.status_code}"

    stopped = httpx.delete(f"{hub}/servers/lab", headers=demo.service_headers, timeout=60)
    assert stopped.status_code in (202, 204)
    eventually("the named route to go", lambda: "/user/carol/lab/mcp" not in demo.routes(), timeout=90)


def test_a_sidecar_that_cannot_start_fails_the_spawn_with_its_reason(tmp_path: Path) -> None:
    policy = tmp_path / "broken.yaml"
    policy.write_text(
        "metadata: {name: broken}\nspec: {sidecar: {env: [{name: MCP_EXEC_TIMEOUT, value: '0'}]}}\n"
    )
    argv, *_ = demo_args(tmp_path / "demo", "dave", "--policy", str(policy))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "dave's server failed to start" in result.stderr
    assert "MCP sidecar for dave exited with code 2 before it was ready" in result.stderr
    assert "MCP_EXEC_TIMEOUT" in result.stderr, result.stderr  # the sidecar's own words
    assert "stopped." in result.stdout


async def test_ctrl_c_leaves_no_process_behind(tmp_path: Path) -> None:
    with running_demo(tmp_path / "demo", "carol") as demo:
        carol = demo.users["carol"]
        async with mcp_client(carol.url, carol.token) as agent:  # a kernel runs too
            await call(agent, "create_notebook", path="k.ipynb")
            assert "2" in text(await call(agent, "execute_code", path="k.ipynb", code="1 + 1"))
        tree = demo.tree()
        assert any("ipykernel" in line for line in _cmdlines(tree)), _cmdlines(tree)
        lines = " ".join(_cmdlines(tree))
        for part in (
            "jupyterhub",
            "configurable-http-proxy",
            "jupyterhub-singleuser",
            "jupyterhub-mcp-sidecar",
        ):
            assert part in lines, f"{part} not among the demo's processes: {lines}"

        assert demo.interrupt() == 0, demo.text()
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive, f"left behind: {_cmdlines(alive)}"
        assert "stopped." in demo.text()
        for port in (demo.port, demo.hub_port, demo.proxy_api_port):
            check_port_free("127.0.0.1", port, "was the demo's", "--port")  # nothing listens any more
        assert not (demo.state / "demo.json").exists()


def test_killed_supervisor_takes_everything_with_it(tmp_path: Path) -> None:
    """kill -9 of ``jupyterhub-mcp demo`` itself: the hub gets SIGTERM from the kernel (parent-death
    signal) and stops servers, sidecars and proxy as on Ctrl-C; what it misses dies with its parent."""
    with running_demo(tmp_path / "demo", "carol") as demo:
        tree = demo.tree()
        assert len(tree) >= 4, _cmdlines(tree)
        demo.proc.kill()
        demo.proc.wait(30)
        _, alive = psutil.wait_procs(tree, timeout=90)
        assert not alive, f"left behind: {_cmdlines(alive)}"


def test_port_taken_is_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        argv, *_ = demo_args(tmp_path / "demo", "alice")
        argv[argv.index("--port") + 1] = str(taken)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"port {taken} on 127.0.0.1 is already in use (public proxy port)" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "demo" / "jupyterhub.sqlite").exists(), "nothing may start"
