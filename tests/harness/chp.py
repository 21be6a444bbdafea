"""A real configurable-http-proxy (node_modules/.bin) on loopback, without a hub: ``ChpProcess``.

- ``api_url`` / ``auth_token``: CHP's REST API and its token (CONFIGPROXY_AUTH_TOKEN)
- ``routes()`` -> ``{path: {"target": ..., data...}}``; ``add_route(path, target, **data)``
- ``restart()``: a new CHP process on the same ports; it starts with an empty route table, as
  Zero to JupyterHub's proxy pod does after a restart (CHP keeps routes in memory only)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.harness.paths import NODE_BIN, free_port
from tests.harness.processes import die_with_parent, stop, wait_http


class ChpProcess:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.api_port = free_port(), free_port()
        self.auth_token = secrets.token_hex(20)
        self.log = workdir / "chp.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        chp = NODE_BIN / "configurable-http-proxy"
        if not chp.exists():
            raise RuntimeError(f"configurable-http-proxy not found at {chp}: run `npm ci` in the repo root")
        argv = [
            str(chp),
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--api-ip=127.0.0.1",
            f"--api-port={self.api_port}",
            "--default-target=http://127.0.0.1:9",
            "--log-level=info",
        ]
        env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": self.auth_token}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
        wait_http(f"{self.api_url}/api/routes", headers=self._headers, process=self.process, log=self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.auth_token}"}

    def routes(self) -> dict[str, dict[str, Any]]:
        response = httpx.get(f"{self.api_url}/api/routes", headers=self._headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def add_route(self, path: str, target: str, **data: Any) -> None:
        response = httpx.post(
            f"{self.api_url}/api/routes{path}",
            headers=self._headers,
            json={**data, "target": target},
            timeout=10,
        )
        assert response.status_code == 201, response.text

    def requests_logged(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
