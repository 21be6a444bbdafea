"""A real JupyterHub (+ configurable-http-proxy from node_modules) for tests: ``RunningHub``.

The session fixture ``jupyterhub`` (tests/fixtures/hub.py) yields one, started:

- ``api_url``      ``http://127.0.0.1:<hub port>/hub/api`` (what JUPYTERHUB_API_URL names)
- ``public_url``   ``http://127.0.0.1:<proxy port>`` (the proxy users see)
- ``proxy_api_url`` / ``proxy_auth_token``  CHP's REST API (add routes, e.g. local mode)
- ``service_token`` the api token of the service ``mcp-test-admin``, whose role holds
  ``admin:users``, ``admin:servers``, ``read:users``, ``tokens``, ``users:activity``
  (enough to mint tokens for other users and to start, stop and inspect their servers);
  ``RunningHub(..., service=, service_scopes=)`` registers another name and role instead
- ``helper_token``  the api token of the service ``alice-helper``, holding only
  ``access:servers!user=alice``: a second identity admitted to alice's server
- ``users``        ``("alice", "bob", "a.b@x.org")``, DummyAuthenticator (any password), named
  servers allowed. Each user's default server record exists (not running), so the activity API
  accepts ``{"servers": {"": ...}}``; a named server has no record until it is spawned
- ``mint_token(user, scopes=None, expires_in=None, note=None) -> (token, token_id)``
  through ``POST /users/{user}/tokens`` (the hub refuses scopes the *owner* does not hold:
  a user holds ``access:servers!user=<self>``, ``read:users!user=<self>`` and the MCP custom scopes
  ``custom:mcp:execute!user=<self>`` (``endpoint.USER_ROLE``), not unfiltered ones)
- ``revoke_token(user, token_id)``, ``whoami(token) -> httpx.Response`` (``GET /user``),
  ``api(method, path, **kw) -> httpx.Response`` as the service
- ``stop()`` / ``start()`` an outage and recovery on the same ports and database (tokens survive);
  ``wait_ready()``; ``log_path`` / ``log_text()`` (the hub logs one line per API request,
  e.g. ``200 GET /hub/api/user (alice@127.0.0.1)``, never a token); ``count_requests(fragment)``

One hub per test session: a test that stops it must start it again before it ends (use
``with hub.outage():``). Every process (hub and the proxy it starts) is stopped at session end, and
dies with pytest (PR_SET_PDEATHSIG on the hub, process group kill in teardown).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from mcp_operator import endpoint

from tests.harness.paths import NODE_BIN, VENV_BIN, free_port
from tests.harness.processes import die_with_parent

START_TIMEOUT = 120.0  # a cold hub start (sqlite schema, CHP) takes seconds on a loaded 2-core box
USERS = ("alice", "bob", "a.b@x.org")
SERVICE = "mcp-test-admin"
SERVICE_SCOPES = ("admin:users", "admin:servers", "read:users", "tokens", "users:activity")

CONFIG = """
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {users!r}
c.JupyterHub.allow_named_servers = True
c.JupyterHub.db_url = "sqlite:///{db}"
c.JupyterHub.cookie_secret_file = {cookie!r}
c.JupyterHub.pid_file = {pid!r}
c.JupyterHub.cleanup_servers = False
# The MCP custom scopes and the user role granting them on the user's own servers, exactly as the
# README tells an admin to configure them (mcp_operator.endpoint).
c.JupyterHub.custom_scopes = {custom_scopes!r}
c.JupyterHub.services = [
    {{"name": {service!r}, "api_token": {token!r}}},
    {{"name": "alice-helper", "api_token": {helper_token!r}}},
]
c.JupyterHub.load_roles = [
    {user_role!r},
    {{
        "name": {service!r},
        "scopes": {service_scopes!r},
        "services": [{service!r}],
    }},
    # A second identity allowed on alice's server (think: a TA's agent on a shared server).
    {{"name": "alice-helper", "scopes": ["access:servers!user=alice"], "services": ["alice-helper"]}},
]
"""


@dataclass
class RunningHub:
    workdir: Path
    port: int = field(default_factory=free_port)
    hub_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    service_token: str = field(default_factory=lambda: "svc-" + secrets.token_hex(20), repr=False)
    proxy_auth_token: str = field(default_factory=lambda: secrets.token_hex(20), repr=False)
    helper_token: str = field(default_factory=lambda: "helper-" + secrets.token_hex(20), repr=False)
    users: tuple[str, ...] = USERS
    # The service the tests act as; another name and role to prove a narrower one is enough.
    service: str = SERVICE
    service_scopes: tuple[str, ...] = SERVICE_SCOPES
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.config = self.workdir / "jupyterhub_config.py"
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                hub_port=self.hub_port,
                proxy_api_port=self.proxy_api_port,
                proxy_token=self.proxy_auth_token,
                chp=str(NODE_BIN / "configurable-http-proxy"),
                users=set(self.users),
                db=self.workdir / "jupyterhub.sqlite",
                cookie=str(self.workdir / "cookie_secret"),
                pid=str(self.workdir / "jupyterhub.pid"),
                service=self.service,
                service_scopes=list(self.service_scopes),
                token=self.service_token,
                helper_token=self.helper_token,
                custom_scopes=endpoint.CUSTOM_SCOPES,
                user_role=endpoint.USER_ROLE,
            )
        )
        self.log_path = self.workdir / "jupyterhub.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proxy_api_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_api_port}"

    # -- process -------------------------------------------------------------------------------

    def start(self) -> None:
        assert self.process is None, "hub already running"
        chp = NODE_BIN / "configurable-http-proxy"
        if not chp.exists():
            raise RuntimeError(f"configurable-http-proxy not found at {chp}: run `npm ci` in the repo root")
        env = {
            **os.environ,
            "PATH": f"{NODE_BIN}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "jupyterhub"), "-f", str(self.config)],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the proxy joins this group: teardown kills both
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited before it was ready:\n{self.log_text()[-4000:]}")
            try:
                if httpx.get(f"{self.api_url}/", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterHub not ready after {timeout:.0f} s:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)  # waiting for another process to bind its port: nothing else to wait on

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        # SIGTERM: the hub stops the proxy it started; the group kill catches anything left over.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        self._wait_port_free(self.hub_port)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The hub is down inside the block and back (same ports, same database) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @staticmethod
    def _wait_port_free(port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            except httpx.TransportError:
                return
            time.sleep(0.1)

    # -- API -----------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self.service_token}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kwargs)

    def mint_token(
        self,
        user: str,
        scopes: list[str] | None = None,
        expires_in: int | None = None,
        note: str | None = None,
    ) -> tuple[str, str]:
        """A new API token of ``user``; scopes None = the hub's default (the owner's own scopes)."""
        body: dict[str, Any] = {"note": note or "test token"}
        if scopes is not None:
            body["scopes"] = scopes
        if expires_in is not None:
            body["expires_in"] = expires_in
        response = self.api("POST", f"/users/{user}/tokens", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"minting a token for {user} failed: {response.status_code} {response.text}")
        model = response.json()
        return model["token"], model["id"]

    def revoke_token(self, user: str, token_id: str) -> None:
        response = self.api("DELETE", f"/users/{user}/tokens/{token_id}")
        if response.status_code not in (204, 404):
            raise RuntimeError(
                f"revoking {token_id} of {user} failed: {response.status_code} {response.text}"
            )

    def whoami(self, token: str) -> httpx.Response:
        return httpx.get(f"{self.api_url}/user", headers={"Authorization": f"token {token}"}, timeout=10)

    # -- log -----------------------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def count_requests(self, fragment: str) -> int:
        """How many hub request log lines contain ``fragment`` (e.g. ``"GET /hub/api/user "``)."""
        return sum(1 for line in self.log_text().splitlines() if fragment in line)
