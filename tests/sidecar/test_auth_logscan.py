"""No token ever reaches a log line: the real sidecar CLI (subprocess, debug logging, audit to stdout)
in hub mode against the real JupyterHub and jupyter_server, fed good, bad, foreign and URL tokens.
Every byte the process writes (stdout + stderr) is scanned. The same run shows agent activity
reaching the hub with the server's own token.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from datetime import datetime

import httpx
import pytest

from tests.harness.hub import RunningHub
from tests.harness.jupyter import JupyterProcess, sidecar_command
from tests.harness.mcp import INITIALIZE, MCP_HEADERS, call, fails, held_client
from tests.harness.paths import free_port
from tests.harness.processes import stop, wait_http

pytestmark = [pytest.mark.hub, pytest.mark.timeout(240)]


def last_activity(hub: RunningHub) -> datetime | None:
    """alice's last activity as the hub records it (None for a user never seen active)."""
    stamp = hub.api("GET", "/users/alice").json()["last_activity"]
    return datetime.fromisoformat(stamp) if stamp else None


def test_no_token_in_any_log_line_and_activity_reaches_the_hub(
    jupyter: JupyterProcess, jupyterhub: RunningHub, tmp_path
) -> None:
    # Plays the server's own JUPYTERHUB_API_TOKEN: what the hub gives a spawned server for activity.
    server_token, _ = jupyterhub.mint_token("alice", scopes=["users:activity!user=alice"], note="server")
    agent, agent_id = jupyterhub.mint_token("alice", note="scan agent")
    bob, _ = jupyterhub.mint_token("bob", note="scan bob")
    garbage = secrets.token_hex(20)
    secrets_to_find = {
        "agent": agent,
        "bob": bob,
        "garbage": garbage,
        "server": server_token,
        "jupyter": jupyter.token,
        "service": jupyterhub.service_token,
    }

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}{jupyter.prefix}mcp"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "JUPYTERHUB_", "JUPYTER_"))}
    env.update(
        JUPYTERHUB_API_URL=jupyterhub.api_url,
        JUPYTERHUB_API_TOKEN=server_token,
        JUPYTERHUB_USER="alice",
        JUPYTERHUB_SERVICE_PREFIX=jupyter.prefix,
        JUPYTERHUB_ACTIVITY_URL=f"{jupyterhub.api_url}/users/alice/activity",
        JUPYTERHUB_ALLOW_TOKEN_IN_URL="1",
        JUPYTER_SERVER_URL=jupyter.origin,
        JUPYTER_TOKEN=jupyter.token,
        MCP_AUTH_CACHE_TTL="0.5",
        MCP_AUDIT_INCLUDE_CODE="1",
    )
    log = tmp_path / "sidecar.log"
    before = last_activity(jupyterhub)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*sidecar_command(), "--host", "127.0.0.1", "--port", str(port), "--log-level", "debug"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_http(f"{base}/healthz", process=process, log=log, timeout=60)

        def post(headers: dict[str, str] | None = None, query: str = "") -> int:
            return httpx.post(
                url + query, json=INITIALIZE, headers={**MCP_HEADERS, **(headers or {})}, timeout=30
            ).status_code

        assert post({"Authorization": f"token {agent}"}) == 200
        assert post(query=f"?token={agent}") == 200
        assert post({"Authorization": f"Bearer {bob}"}) == 403
        assert post({"Authorization": f"Bearer {garbage}"}) == 401
        assert post(query=f"?token={garbage}&x=1") == 401

        async def use() -> None:
            async with held_client(url, agent) as client:
                await call(client, "list_files")
                await fails(client, "read_notebook", path="missing-scan.ipynb")

        asyncio.run(use())

        def activity_posted() -> bool:
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
            return 'mcp_activity_posts_total{outcome="ok"} 1.0' in metrics

        deadline = time.monotonic() + 60
        while not activity_posted():
            assert time.monotonic() < deadline, "no activity post reached the hub"
            time.sleep(0.2)
    finally:
        stop(process)

    after = last_activity(jupyterhub)
    assert after is not None and (before is None or after > before)

    output = log.read_text(errors="replace")
    for name, value in secrets_to_find.items():
        assert value not in output, f"the {name} token appears in the sidecar output"
    # The scan saw real output: debug logs, refusals and the audit lines with the token id.
    assert "refused POST" in output and "needs the scope" in output
    assert '"tool":"list_files"' in output and f'"token_id":"{agent_id}"' in output
    assert '"outcome":"error"' in output
