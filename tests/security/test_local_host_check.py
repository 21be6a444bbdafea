"""Local mode's sidecars accept only their own Host names (issue 15 §2, cheap amplification),
against the real demo: hub, proxy, Jupyter server and sidecar, with the SDK's own Host check.

Before: local mode left MCP_ALLOWED_HOSTS at ``*``, so a request naming any host (what a
DNS-rebinding page sends) reached MCP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp_local.plan import DemoOptions, public_hosts
from mcp_local.sidecar_env import allowed_hosts

from tests.harness.demo import DemoProcess, User, running_demo
from tests.harness.mcp import INITIALIZE, MCP_HEADERS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    with running_demo(tmp_path_factory.mktemp("host-check") / "demo", "alice") as running:
        yield running


@pytest.fixture(scope="module")
def alice(demo: DemoProcess) -> User:
    return demo.users["alice"]


def initialize(url: str, token: str, host: str | None = None) -> httpx.Response:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    if host is not None:
        headers["Host"] = host
    return httpx.post(url, json=INITIALIZE, headers=headers, timeout=30)


def test_through_the_proxy_only_the_public_host_is_accepted(demo: DemoProcess, alice: User) -> None:
    assert initialize(alice.url, alice.token).status_code == 200
    assert initialize(alice.url, alice.token, host=f"localhost:{demo.port}").status_code == 200
    refused = initialize(alice.url, alice.token, host="evil.example")
    assert refused.status_code == 421 and "Invalid Host header" in refused.text, refused.text


def test_the_sidecar_itself_accepts_only_its_own_address(demo: DemoProcess, alice: User) -> None:
    route = next(r for path, r in demo.routes().items() if path.rstrip("/") == "/user/alice/mcp")
    direct = route["target"].rstrip("/") + "/user/alice/mcp"
    assert initialize(direct, alice.token).status_code == 200  # Host: 127.0.0.1:<its port>
    for host in ("evil.example", f"evil.example:{demo.port}", "127.0.0.1.evil.example"):
        refused = initialize(direct, alice.token, host=host)
        assert refused.status_code == 421, (host, refused.text)


def test_the_allow_list_is_the_demos_own_addresses(tmp_path: Path) -> None:
    def hosts(ip: str) -> list[str]:
        return public_hosts(DemoOptions(["alice"], tmp_path, ip=ip, port=8000))

    assert hosts("127.0.0.1") == ["127.0.0.1:8000", "localhost:8000"]
    assert hosts("10.1.2.3") == ["10.1.2.3:8000", "127.0.0.1:8000", "localhost:8000"]
    assert hosts("0.0.0.0") == ["*"]  # reached by names the demo cannot know: the check is off
    assert allowed_hosts(45678, ["127.0.0.1:8000"]) == "127.0.0.1:45678,localhost:45678,127.0.0.1:8000"
