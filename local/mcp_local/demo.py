"""``jupyterhub-mcp demo``: run the plan. Hub, proxy, servers, sidecars; tokens; clean stop.

The supervisor (this process) starts the hub in a session of its own, so the terminal's Ctrl-C
reaches only us and we stop things in order: revoke the demo tokens, SIGTERM the hub (which stops
every server, and through ``MCPLocalSpawner.stop`` every sidecar and MCP route, then the proxy),
and finally reap any process of the tree that is still there. Children also die with their parent
(PR_SET_PDEATHSIG) should the supervisor itself be killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx
from mcp_operator.hubclient import HubClient, HubError, HubRefused

from .plan import (
    AUTH_SECRET_FILE,
    AUTH_SERVICE_NAME,
    TOKEN_NOTE,
    DemoOptions,
    Endpoint,
    endpoint_url,
    hub_config,
    token_scopes,
)
from .processes import (
    become_subreaper,
    check_port_free,
    descendants,
    die_with_parent,
    free_port,
    stop_processes,
    tail,
)

READY_FILE = "demo.json"
HUB_CONFIG = Path(__file__).with_name("hub_config.py")


class DemoError(RuntimeError):
    """The demo cannot start; the message says what happened and where to look."""


def find_chp() -> list[str]:
    """configurable-http-proxy from node_modules (here or above, or beside this checkout), else PATH."""
    roots = [Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents]
    for root in roots:
        candidate = root / "node_modules" / ".bin" / "configurable-http-proxy"
        if candidate.exists():
            return [str(candidate)]
    found = shutil.which("configurable-http-proxy")
    if found:
        return [found]
    raise DemoError("configurable-http-proxy not found: run `make node` (npm ci) in the repository first")


def venv_script(name: str) -> str:
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return str(script)
    found = shutil.which(name)
    if not found:
        raise DemoError(f"{name} not found beside {sys.executable} nor on PATH")
    return found


def secret_file(path: Path) -> str:
    """A secret kept across runs (the hub's sqlite remembers what it was given), mode 0600."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class DemoHub(HubClient):
    """The hub API calls the demo needs beyond the operator's token calls."""

    async def start_server(self, user: str) -> None:
        # 201 started, 202 pending; 400 means it is already running or starting.
        try:
            await self._request("POST", f"users/{quote(user, safe='@~')}/server", ok=(201, 202))
        except HubRefused as exc:
            if exc.status != 400:
                raise

    async def stop_server(self, user: str, name: str = "") -> None:
        path = f"users/{quote(user, safe='@~')}/" + (f"servers/{quote(name, safe='')}" if name else "server")
        try:
            await self._request("DELETE", path, ok=(202, 204))
        except HubRefused as exc:
            if exc.status not in (400, 404):  # not running / gone already
                raise

    async def servers(self, user: str) -> dict[str, dict[str, Any]]:
        """The user's servers by name ("" = the default one)."""
        response = await self._request("GET", f"users/{quote(user, safe='@~')}", ok=(200,))
        return response.json().get("servers") or {}

    async def server_state(self, user: str, name: str = "") -> dict[str, Any] | None:
        return (await self.servers(user)).get(name)


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.state = options.state_dir
        self.hub_log = self.state / "jupyterhub.log"
        self.hub_proc: asyncio.subprocess.Process | None = None
        self.minted: list[tuple[str, str]] = []  # (user, token id), revoked on the way out

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # --- start ---------------------------------------------------------------------------------

    def prepare(self) -> dict[str, str]:
        """Check ports, write secrets and the hub's config; the hub's environment."""
        self.options.check()
        for host, port, role, flag in self.options.ports():
            check_port_free(host, port, role, flag)
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.state / READY_FILE).unlink(missing_ok=True)
        service_token = secret_file(self.state / "service-token")
        proxy_token = secret_file(self.state / "proxy-token")
        password = secret_file(self.state / "password")[:16]
        secret_file(self.state / AUTH_SECRET_FILE)  # the authorization server signs cookies with it
        if self.options.auth_port:
            check_port_free("127.0.0.1", self.options.auth_port, "authorization server port", "--auth-port")
        auth_port = self.options.auth_port or free_port("127.0.0.1")
        config = hub_config(
            self.options,
            service_token=service_token,
            password=password,
            chp_command=find_chp(),
            singleuser_cmd=[venv_script("jupyterhub-singleuser")],
            as_root=os.geteuid() == 0,
            auth_port=auth_port,
            auth_cmd=[venv_script("jupyterhub-mcp-authserver")],
        )
        config_path = self.state / "hub-config.json"
        write_private(config_path, json.dumps(config, indent=2))
        env = dict(os.environ)
        env.update(
            CONFIGPROXY_AUTH_TOKEN=proxy_token,
            JUPYTERHUB_MCP_DEMO_CONFIG=str(config_path),
            PYTHONUNBUFFERED="1",
        )
        for user in self.options.users:
            self.options.user_dir(user).mkdir(mode=0o700, exist_ok=True)
        return env

    async def start_hub(self, env: dict[str, str]) -> None:
        with self.hub_log.open("ab") as log:
            self.hub_proc = await asyncio.create_subprocess_exec(
                venv_script("jupyterhub"),
                "-f",
                str(HUB_CONFIG),
                cwd=self.state,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        self.say(f"JupyterHub starting (pid {self.hub_proc.pid}), log: {self.hub_log}")
        # Through the proxy: proves hub, proxy and the hub's route all work.
        await self.wait_http(self.options.public_url + "/hub/api/", "JupyterHub behind the proxy")
        await self.wait_http(
            f"{self.options.public_url}/services/{AUTH_SERVICE_NAME}/", "the MCP authorization server"
        )

    async def wait_http(self, url: str, what: str, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                self.check_hub_alive()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"{what} not up after {within:.0f}s; end of {self.hub_log}:\n{tail(self.hub_log)}"
                    )
                await asyncio.sleep(0.2)

    def check_hub_alive(self) -> None:
        if self.hub_proc is not None and self.hub_proc.returncode is not None:
            raise DemoError(
                f"JupyterHub exited with code {self.hub_proc.returncode}; end of {self.hub_log}:\n"
                + tail(self.hub_log)
            )

    async def start_server(self, hub: DemoHub, user: str) -> None:
        try:
            await hub.start_server(user)
        except HubRefused as exc:  # a spawn that fails fast is answered with its error
            raise DemoError(
                f"{user}'s server failed to start ({exc}); end of {self.hub_log}:\n{tail(self.hub_log)}"
            ) from None
        deadline = time.monotonic() + self.options.start_timeout + 30
        while True:
            self.check_hub_alive()
            server = await hub.server_state(user)
            if server and server.get("ready"):
                return
            if not server or (not server.get("pending") and not server.get("ready")):
                raise DemoError(
                    f"{user}'s server failed to start; end of {self.hub_log}:\n{tail(self.hub_log)}"
                )
            if time.monotonic() > deadline:
                raise DemoError(f"{user}'s server not ready in time; see {self.hub_log}")
            await asyncio.sleep(0.5)

    async def hand_out(self, hub: DemoHub, user: str) -> Endpoint:
        minted = await hub.mint(
            user,
            scopes=token_scopes(user, policy=self.options.policy),
            expires_in=self.options.token_ttl,
            note=TOKEN_NOTE,
        )
        self.minted.append((user, minted.id))
        endpoint = Endpoint(user=user, url=endpoint_url(self.options, user), token=minted.value)
        write_private(
            self.options.user_dir(user) / "mcp.json", json.dumps(endpoint.mcp_json(), indent=2) + "\n"
        )
        return endpoint

    def announce(self, endpoints: list[Endpoint]) -> None:
        o = self.options
        for e in endpoints:
            config = e.mcp_json()
            self.say(
                f"\n== {e.user} ==\n"
                f"MCP endpoint: {e.url}\n"
                f"add by URL:   {e.url}   (a client with MCP authorization: log in through the hub, "
                "consent, done; no token to paste)\n"
                f"token:        {e.token}   ({' '.join(token_scopes(e.user, policy=o.policy))} only, "
                f"expires in {o.token_ttl}s)\n"
                f"saved to:     {o.user_dir(e.user) / 'mcp.json'}\n"
                "Streamable HTTP client config:\n"
                + json.dumps({"mcpServers": config["mcpServers"]}, indent=2)
                + "\nstdio client config (through mcp-remote):\n"
                + json.dumps(config["mcpRemote"], indent=2)
            )
        password = (self.state / "password").read_text().strip()[:16]
        self.say(
            f"\nJupyterLab: {o.public_url}/hub/login as {', '.join(o.users)} (password {password})\n"
            f"State and logs: {self.state}\n"
            "jupyterhub-mcp demo is ready. Ctrl-C stops everything."
        )

    # --- run and stop --------------------------------------------------------------------------

    async def run(self) -> None:
        env = self.prepare()
        become_subreaper()
        try:
            await self.start_hub(env)
            token = (self.state / "service-token").read_text().strip()
            # Starting a server answers only after the hub's slow_spawn_timeout (10 s): wait longer.
            async with DemoHub(self.options.hub_api_url, token, timeout=30.0) as hub:
                self.say(f"starting servers for {', '.join(self.options.users)} ...")
                await asyncio.gather(*(self.start_server(hub, u) for u in self.options.users))
                endpoints = [await self.hand_out(hub, u) for u in self.options.users]
                self.announce(endpoints)
                ready = {
                    "pid": os.getpid(),
                    "hub_pid": self.hub_proc.pid if self.hub_proc else None,
                    "public_url": self.options.public_url,
                    "users": {
                        e.user: {"url": e.url, "mcp_json": str(self.options.user_dir(e.user) / "mcp.json")}
                        for e in endpoints
                    },
                }
                write_private(self.state / READY_FILE, json.dumps(ready, indent=2))
                assert self.hub_proc is not None
                code = await self.hub_proc.wait()
                raise DemoError(
                    f"JupyterHub exited unexpectedly (code {code}); end of {self.hub_log}:\n"
                    + tail(self.hub_log)
                )
        finally:
            await self.shutdown()

    async def tidy_up_through_the_hub(self) -> None:
        """Revoke the demo tokens and stop the servers while the proxy still runs.

        Left to its own shutdown, the hub stops the proxy and the servers at the same time and then
        retries removing each server's route from the gone proxy for ~20 s.
        """
        if self.hub_proc is None or self.hub_proc.returncode is not None:
            return
        token = (self.state / "service-token").read_text().strip()
        async with DemoHub(self.options.hub_api_url, token, attempts=1, timeout=30.0) as hub:
            for user, token_id in self.minted:
                with contextlib.suppress(HubError, httpx.HTTPError):
                    await hub.revoke(user, token_id)
            self.minted.clear()

            async def stop(user: str, name: str) -> None:
                with contextlib.suppress(HubError, httpx.HTTPError):
                    await hub.stop_server(user, name)
                    deadline = time.monotonic() + 60
                    # The hub announces nothing: ask until the server is gone (bounded).
                    while True:
                        if not await hub.server_state(user, name) or time.monotonic() > deadline:
                            return
                        await asyncio.sleep(0.2)

            running: list[tuple[str, str]] = []
            for user in self.options.users:
                with contextlib.suppress(HubError, httpx.HTTPError):
                    running += [(user, name) for name in await hub.servers(user)]
            await asyncio.gather(*(stop(u, n) for u, n in running), return_exceptions=True)

    async def shutdown(self) -> None:
        (self.state / READY_FILE).unlink(missing_ok=True)
        if self.hub_proc is None:
            return
        self.say("stopping: tokens, servers, sidecars, proxy, hub ...")
        with contextlib.suppress(Exception):
            await self.tidy_up_through_the_hub()
        tree = descendants(self.hub_proc.pid)
        if self.hub_proc.returncode is None:
            self.hub_proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.hub_proc.wait(), 90)
            except TimeoutError:
                self.say("JupyterHub did not stop in 90s; killing it")
                self.hub_proc.kill()
                await self.hub_proc.wait()
        # Whatever the hub left behind, and any orphan that re-parented to us (subreaper).
        leftovers = [p for p in tree if p.is_running()] + descendants(os.getpid())
        if leftovers:
            killed = await asyncio.to_thread(stop_processes, leftovers)
            if killed:
                self.say(f"had to kill leftover processes {killed}")
        self.say("stopped.")


async def run_demo(options: DemoOptions) -> int:
    demo = Demo(options)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stopping = False

    def on_signal(signum: int) -> None:
        nonlocal stopping
        if stopping:
            print("already stopping, please wait", file=sys.stderr, flush=True)
            return
        stopping = True
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await demo.run()
    except asyncio.CancelledError:
        return 0 if stopping else 1
    return 0
