"""One real ``jupyterhub-mcp demo`` (alice and bob) shared by the e2e tests of a session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.demo import DemoProcess, running_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    state = tmp_path_factory.mktemp("e2e") / "demo"
    # The hub's route check every 3 s instead of 5 min, so a test can watch it leave MCP routes alone.
    with running_demo(state, "alice,bob", "--route-check-interval", "3") as running:
        yield running


@pytest.fixture(scope="session")
def alice(demo: DemoProcess):
    return demo.users["alice"]


@pytest.fixture(scope="session")
def bob(demo: DemoProcess):
    return demo.users["bob"]
