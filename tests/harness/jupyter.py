"""A real jupyter_server (+ ipykernel, + jupyter-collaboration or not) and the sidecar in front of
it, in process (``sidecar_in_process``) or as the console script (``sidecar_command``).

The session fixtures that share one server per kind are in tests/fixtures/jupyter.py. Every process
started here is stopped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.harness.paths import VENV_BIN, free_port
from tests.harness.processes import stop, wait_http

START_TIMEOUT = 90.0


class Server(Protocol):
    """A Jupyter server as a client reaches it: its base URL (ending in /) and the headers that
    authenticate (a ``JupyterProcess``, a ``ServerAddress``)."""

    @property
    def url(self) -> str: ...

    @property
    def headers(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class ServerAddress:
    """A server known only by its URL (e.g. a demo user's server through the proxy)."""

    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class JupyterProcess:
    origin: str  # http://127.0.0.1:port, what JUPYTER_SERVER_URL names
    prefix: str  # the server's base_url, as JupyterHub sets it: /user/alice/
    token: str
    root: Path
    collaborative: bool
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return self.origin + self.prefix

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


@contextlib.contextmanager
def jupyter_server(
    base: Path, *, collaborative: bool, prefix: str = "/user/alice/"
) -> Iterator[JupyterProcess]:
    root = base / "root"
    home = base / "home"
    config_dir = home / "config"
    for folder in (root, config_dir, home / "data", home / "runtime"):
        folder.mkdir(parents=True, exist_ok=True)
    # Extensions these tests do not need are off (faster start); ydoc off = no collaboration.
    disabled = ["jupyterlab", "notebook_shim", "jupyter_lsp", "jupyter_server_terminals"]
    if not collaborative:
        disabled.append("jupyter_server_ydoc")
    # Saved to disk shortly after an edit, so tests can read the file back without long waits.
    config = {"YDocExtension": {"document_save_delay": 0.2}}
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    token = secrets.token_hex(16)
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "HOME": str(home),
    }
    log = base / "jupyter.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "jupyter-server"),
                "--no-browser",
                f"--port={port}",
                "--ip=127.0.0.1",
                f"--IdentityProvider.token={token}",
                "--allow-root",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.base_url={prefix}",
                *(f"--ServerApp.jpserver_extensions={name}=False" for name in disabled),
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    origin = f"http://127.0.0.1:{port}"
    try:
        wait_http(
            f"{origin}{prefix}api/status",
            headers={"Authorization": f"token {token}"},
            process=process,
            log=log,
        )
        yield JupyterProcess(
            origin=origin, prefix=prefix, token=token, root=root, collaborative=collaborative, process=process
        )
    finally:
        stop(process)


# -- the sidecar, in process (so tests can look inside: rooms, kernel connections) --------------


@dataclass
class RunningSidecar:
    url: str  # the MCP endpoint
    base: str  # http://127.0.0.1:port
    token: str
    app: object  # the Starlette app (app.state.tools is the NotebookTools)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.asynccontextmanager
async def sidecar_in_process(
    jupyter: JupyterProcess, guard: object | None = None, **env: str
) -> AsyncIterator[RunningSidecar]:
    import uvicorn
    from mcp_sidecar.app import build_app
    from mcp_sidecar.config import Settings

    token = secrets.token_hex(16)
    port = free_port()
    settings = Settings.from_env(
        {
            "MCP_TOKEN": token,
            "JUPYTER_SERVER_URL": jupyter.origin,
            "JUPYTER_TOKEN": jupyter.token,
            "JUPYTERHUB_SERVICE_PREFIX": jupyter.prefix,
            "MCP_AUDIT_LOG": "off",
            **env,
        }
    )
    app = build_app(settings, guard=guard(settings) if callable(guard) else None)  # type: ignore[arg-type]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise RuntimeError("in-process sidecar did not start")
        await asyncio.sleep(0.02)  # uvicorn exposes no start event; this only waits for the bind
    base = f"http://127.0.0.1:{port}"
    try:
        yield RunningSidecar(url=f"{base}{settings.mcp_path}", base=base, token=token, app=app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def sidecar_process_env(jupyter: JupyterProcess, token: str, port: int) -> dict[str, str]:
    """The environment of a sidecar process on loopback in front of ``jupyter``, static-token auth,
    no audit log (benchmarks): this machine's environment without any MCP_ or JUPYTERHUB_ setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "JUPYTERHUB_"))}
    env.update(
        MCP_TOKEN=token,
        MCP_PORT=str(port),
        MCP_HOST="127.0.0.1",
        JUPYTER_SERVER_URL=jupyter.origin,
        JUPYTER_TOKEN=jupyter.token,
        MCP_AUDIT_LOG="off",
    )
    return env


def sidecar_command() -> list[str]:
    return (
        [str(VENV_BIN / "jupyterhub-mcp-sidecar")]
        if (VENV_BIN / "jupyterhub-mcp-sidecar").exists()
        else [sys.executable, "-m", "mcp_sidecar.cli"]
    )
