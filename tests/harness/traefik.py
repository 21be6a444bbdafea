"""A real Ingress and Gateway API controller for the z2jh tier: Traefik, ``running_traefik``.

Traefik v3 (pinned in tests/controlplane/versions.env, built from its Go module by
tests/controlplane/build.sh like the control plane) reads Ingress, IngressClass, Gateway,
GatewayClass, HTTPRoute, Service and EndpointSlice objects from the test API server and proxies
to the endpoints they name: the user pods the node agent runs, whose IPs the host reaches.

What is simulated: Traefik runs on the host (not as a pod) with the admin kubeconfig instead of a
ServiceAccount of its own, and listens on free host ports instead of a LoadBalancer Service's 80
and 443; there is no DNS for the route's host, so clients connect to those ports and send the
host as ``Host`` and TLS SNI (``routed_http_client``). Everything on the request path is Traefik's.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

from tests.fixtures.controlplane import control_plane_bin_dir, read_versions
from tests.harness.paths import free_port
from tests.harness.processes import die_with_parent, stop

INGRESS_CONTROLLER = "traefik.io/ingress-controller"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
START_TIMEOUT = 60.0


def traefik_binary(bin_dir: Path | None = None) -> Path:
    """The binary tests/controlplane/build.sh builds, named by its pinned version."""
    return (bin_dir or control_plane_bin_dir()) / f"traefik-{read_versions()['TRAEFIK_VERSION']}"


def traefik_argv(binary: Path, web_port: int, websecure_port: int) -> list[str]:
    """Two entry points (plain and TLS) and both Kubernetes providers; access log on stdout so a
    failing test shows what Traefik did with each request."""
    return [
        str(binary),
        f"--entryPoints.web.address=:{web_port}",
        f"--entryPoints.websecure.address=:{websecure_port}",
        "--entryPoints.websecure.http.tls=true",
        "--providers.kubernetesingress=true",
        "--providers.kubernetesgateway=true",
        "--global.checkNewVersion=false",  # test traffic stays on this machine
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
        "--accesslog=true",
        "--ping=true",
        "--ping.entryPoint=web",
    ]


@dataclass
class Traefik:
    web_port: int
    websecure_port: int
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 60) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


@contextlib.contextmanager
def running_traefik(kubeconfig: Path, workdir: Path, bin_dir: Path | None = None) -> Iterator[Traefik]:
    binary = traefik_binary(bin_dir)
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `make controlplane` (tests/controlplane/build.sh)")
    web, websecure = free_port(), free_port()
    log = workdir / "traefik.log"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "KUBECONFIG": str(kubeconfig)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            traefik_argv(binary, web, websecure),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    traefik = Traefik(web, websecure, log, process)
    try:
        _wait_ping(traefik)
        yield traefik
    finally:
        stop(process)


def _wait_ping(traefik: Traefik) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if traefik.process.poll() is not None:
            raise RuntimeError(f"traefik exited with {traefik.process.returncode}:\n{traefik.log_tail()}")
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(f"http://127.0.0.1:{traefik.web_port}/ping", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"traefik did not answer /ping within {START_TIMEOUT} s:\n{traefik.log_tail()}")


class RoutedTransport(httpx2.AsyncBaseTransport):
    """Sends each request for ``host[:port]`` to a loopback port instead, keeping the URL's host in
    the ``Host`` header and as TLS SNI (so certificates are checked against it): what DNS pointing
    the host at the controller's LoadBalancer would do."""

    def __init__(self, routes: Mapping[tuple[str, int], int], verify: ssl.SSLContext | bool) -> None:
        self.routes = dict(routes)
        self.inner = httpx2.AsyncHTTPTransport(verify=verify)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        port = self.routes.get((url.host, url.port or (443 if url.scheme == "https" else 80)))
        if port is not None:
            request.extensions = {**request.extensions, "sni_hostname": url.host}
            request.url = url.copy_with(host="127.0.0.1", port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def routed_http_client(
    routes: Mapping[tuple[str, int], int], *, headers: Mapping[str, str], ca_pem: bytes | None = None
) -> httpx2.AsyncClient:
    """A client with the MCP SDK's timeouts whose requests for the given hosts go to Traefik."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else True
    timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
    return httpx2.AsyncClient(
        headers=dict(headers), timeout=timeout, transport=RoutedTransport(routes, verify)
    )
