"""Slow or idle connections are not held (issue 15 §2, cheap amplification), against the real
sidecar process as its CLI starts it (uvicorn with the sidecar's options), over raw sockets.

Before: 300 connections each sending part of a header line were all held open (uvicorn starts no
timer before a request's head is complete).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.jupyter import sidecar_command
from tests.harness.paths import free_port
from tests.harness.processes import stop, wait_http

pytestmark = pytest.mark.timeout(180)

HEADER_TIMEOUT = 1.0
KEEP_ALIVE = 1
SLOW = 300  # connections dripping a header, as in the attack
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"


@pytest.fixture(scope="module")
def sidecar_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "JUPYTERHUB_", "JUPYTER_"))}
    env.update(
        MCP_TOKEN=secrets.token_hex(16),
        MCP_HOST="127.0.0.1",
        MCP_PORT=str(port),
        JUPYTER_SERVER_URL="http://127.0.0.1:9",  # /healthz does not need Jupyter
        MCP_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        MCP_KEEPALIVE_TIMEOUT=str(KEEP_ALIVE),
    )
    log = Path(tmp_path_factory.mktemp("slow")) / "sidecar.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            sidecar_command(), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process=process, log=log, timeout=60)
        yield port
    finally:
        stop(process)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass  # a response: read on to the close
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_a_connection_dripping_its_header_is_closed(sidecar_port: int) -> None:
    with socket.create_connection(("127.0.0.1", sidecar_port)) as sock:
        sock.sendall(PARTIAL)
        started = time.monotonic()
        time.sleep(HEADER_TIMEOUT / 2)
        sock.sendall(b"b")  # still dripping: bytes arriving do not extend the deadline
        assert closed_within(sock, HEADER_TIMEOUT + 3), "a partial header was held open"
        assert time.monotonic() - started < HEADER_TIMEOUT + 3


def test_many_slow_connections_are_all_closed_and_the_sidecar_still_serves(sidecar_port: int) -> None:
    socks = [socket.create_connection(("127.0.0.1", sidecar_port)) for _ in range(SLOW)]
    try:
        for sock in socks:
            sock.sendall(PARTIAL)
        deadline = time.monotonic() + HEADER_TIMEOUT + 10
        held = [s for s in socks if not closed_within(s, max(0.01, deadline - time.monotonic()))]
        assert not held, f"{len(held)} of {SLOW} slow connections still open"
    finally:
        for sock in socks:
            sock.close()
    with socket.create_connection(("127.0.0.1", sidecar_port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_an_idle_keep_alive_connection_is_closed(sidecar_port: int) -> None:
    with socket.create_connection(("127.0.0.1", sidecar_port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert closed_within(sock, KEEP_ALIVE + 2), "an idle keep-alive connection was held open"
