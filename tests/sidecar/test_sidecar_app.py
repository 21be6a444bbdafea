"""The sidecar process and its HTTP surface: CLI start-up, health, readiness, routing, Host check."""

from __future__ import annotations

import os
import secrets
import subprocess
import time

import httpx
import pytest

from tests.harness.jupyter import JupyterProcess, sidecar_command, sidecar_in_process
from tests.harness.mcp import call, held_client
from tests.harness.paths import free_port
from tests.harness.processes import stop, wait_http

pytestmark = pytest.mark.timeout(120)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "JUPYTERHUB_", "JUPYTER_"))}
    return {**env, **extra}


def test_cli_refuses_to_start_without_auth() -> None:
    result = subprocess.run(sidecar_command(), env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to start without authentication" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_rejects_bad_config_clearly() -> None:
    result = subprocess.run(
        sidecar_command(),
        env=clean_env(MCP_TOKEN="t", MCP_EXEC_TIMEOUT="soon"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MCP_EXEC_TIMEOUT must be a number" in result.stderr


def test_cli_serves_mcp_and_never_logs_the_token(jupyter: JupyterProcess, tmp_path) -> None:
    token = secrets.token_hex(16)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    port = free_port()
    log = tmp_path / "sidecar.log"
    env = clean_env(
        JUPYTER_SERVER_URL=jupyter.origin,
        JUPYTER_TOKEN=jupyter.token,
        JUPYTERHUB_SERVICE_PREFIX=jupyter.prefix,
    )
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*sidecar_command(), "--port", str(port), "--host", "127.0.0.1", "--token-file", str(token_file)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process=process, log=log, timeout=60)
        ready_after = time.monotonic() - started
        readyz = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert readyz.status_code == 200, readyz.text
        url = f"http://127.0.0.1:{port}{jupyter.prefix}mcp"
        assert httpx.post(url, json={}).status_code == 401
        assert httpx.post(url, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401

        async def use() -> None:
            async with held_client(url, token) as client:
                await call(client, "list_files")

        import asyncio

        asyncio.run(use())
    finally:
        stop(process)
    output = log.read_text()
    assert token not in output and jupyter.token not in output
    assert f"MCP at {jupyter.prefix}mcp" in output
    assert ready_after < 30  # generous on a loaded box; the benchmark measures the real number


async def test_health_readiness_and_routes(jupyter: JupyterProcess) -> None:
    async with sidecar_in_process(jupyter) as sidecar, httpx.AsyncClient(base_url=sidecar.base) as http:
        assert (await http.get("/healthz")).text == "ok"
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert (await http.get("/metrics")).status_code == 200
        # With and without the trailing slash: MCP answers, no redirect to trip a client.
        for path in (f"{jupyter.prefix}mcp", f"{jupyter.prefix}mcp/"):
            response = await http.post(path, json={}, headers=sidecar.headers)
            assert response.status_code not in (301, 302, 307, 308, 404), (path, response.status_code)
        assert (await http.post(f"{jupyter.prefix}mcp", json={})).status_code == 401


async def test_readiness_fails_fast_when_jupyter_is_unreachable(jupyter: JupyterProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with sidecar_in_process(jupyter, JUPYTER_SERVER_URL=dead) as sidecar:
        async with httpx.AsyncClient(base_url=sidecar.base) as http:
            started = time.monotonic()
            ready = await http.get("/readyz", timeout=30)
            assert ready.status_code == 503
            assert "unreachable" in ready.json()["reason"]
            assert time.monotonic() - started < 5
            assert (await http.get("/healthz")).status_code == 200


async def test_host_header_check_follows_allowed_hosts(jupyter: JupyterProcess) -> None:
    async with sidecar_in_process(jupyter, MCP_ALLOWED_HOSTS="hub.example.org") as sidecar:
        async with httpx.AsyncClient(base_url=sidecar.base) as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            headers = {**sidecar.headers, "Accept": "application/json, text/event-stream"}
            wrong = await http.post(f"{jupyter.prefix}mcp", json=body, headers=headers)
            assert wrong.status_code == 421
            right = await http.post(
                f"{jupyter.prefix}mcp", json=body, headers={**headers, "Host": "hub.example.org"}
            )
            assert right.status_code != 421
