"""`chp.ProxyRouter` against the real configurable-http-proxy: the token from a Secret (read once,
again when CHP refuses it after a rotation), escaped paths, an unreachable CHP reported once and
never with the token, and no request for a pod event that changes nothing."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from mcp_operator.chp import ProxyRouter
from mcp_operator.constants import PROXY_TOKEN_KEY, PROXY_TOKEN_SECRET, ROUTE_MARK
from mcp_operator.policy import Policy

from tests.harness.chp import ChpProcess
from tests.harness.paths import free_port

pytestmark = pytest.mark.hub  # needs node + configurable-http-proxy


class Secrets:
    """The Secret `hub` as the Kube layer returns it (data base64-encoded); counts reads."""

    def __init__(self, token: str) -> None:
        self.token, self.reads = token, 0

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        if name != PROXY_TOKEN_SECRET:
            return None
        return {"data": {PROXY_TOKEN_KEY: base64.b64encode(self.token.encode()).decode()}}


@pytest.fixture
def chp(tmp_path: Any) -> Iterator[ChpProcess]:
    proxy = ChpProcess(tmp_path)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def router(url: str, store: Secrets) -> ProxyRouter:
    return ProxyRouter(url, secrets=store, secret_name=PROXY_TOKEN_SECRET, secret_key=PROXY_TOKEN_KEY)


def pod(user: str, ip: str = "10.2.3.4") -> dict[str, Any]:
    return {
        "metadata": {"name": f"jupyter-{user}", "namespace": "jhub", "uid": f"uid-{user}"},
        "spec": {
            "containers": [
                {
                    "name": "notebook",
                    "env": [{"name": "JUPYTERHUB_SERVICE_PREFIX", "value": f"/user/{user}/"}],
                }
            ]
        },
        "status": {"phase": "Running", "podIP": ip},
    }


POLICY = Policy.from_object({"metadata": {"name": "p"}})


async def test_routes_with_the_secrets_token_survive_a_rotation(chp: ChpProcess) -> None:
    store = Secrets(chp.auth_token)
    r = router(chp.api_url, store)
    try:
        assert await r.ensure(pod("a.b@x.org"), POLICY)
        route = chp.routes()["/user/a.b@x.org/mcp"]
        assert route["target"] == "http://10.2.3.4:8890" and route[ROUTE_MARK] is True
        assert await r.ensure(pod("a.b@x.org"), POLICY)  # nothing changed: no request
        assert r.requests["add"] == 1 and store.reads == 1

        # the token is rotated (Z2JH: a new proxy token, CHP restarted): read the Secret again
        chp.auth_token = store.token = secrets.token_hex(20)
        chp.restart()
        assert await r.ensure(pod("bob"), POLICY)
        assert "/user/bob/mcp" in chp.routes() and store.reads == 2

        # the pod moved (new IP): the route follows; the pod goes: the route goes
        assert await r.ensure(pod("bob", ip="10.2.3.5"), POLICY)
        assert chp.routes()["/user/bob/mcp"]["target"] == "http://10.2.3.5:8890"
        assert await r.remove(pod("bob"))
        assert "/user/bob/mcp" not in chp.routes()
        # every request counted, the one CHP refused with the old token too
        assert (r.requests["add"], r.requests["delete"], r.writes()) == (4, 1, 5)
    finally:
        await r.close()


async def test_an_unreachable_proxy_is_reported_once_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "secret-" + secrets.token_hex(8)
    r = router(f"http://127.0.0.1:{free_port()}", Secrets(token))
    caplog.set_level(logging.DEBUG, logger="mcp_operator.chp")
    try:
        assert not await r.ensure(pod("alice"), POLICY)
        assert not await r.ensure(pod("alice"), POLICY)  # retried: nothing remembered as routed
        assert await r.table("jhub") is None
    finally:
        await r.close()
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    assert token not in caplog.text


async def test_a_missing_secret_says_which(chp: ChpProcess, caplog: pytest.LogCaptureFixture) -> None:
    r = ProxyRouter(chp.api_url, secrets=Secrets("x"), secret_name="not-there", secret_key=PROXY_TOKEN_KEY)
    try:
        assert not await r.ensure(pod("alice"), POLICY)
    finally:
        await r.close()
    assert f"Secret jhub/not-there key {PROXY_TOKEN_KEY} is missing" in caplog.text
    assert chp.routes().get("/user/alice/mcp") is None


async def test_the_old_pod_of_a_server_going_leaves_the_new_pods_route(chp: ChpProcess) -> None:
    """The server restarted: the new pod (same path, new uid and IP) is routed before the old
    pod's deletion arrives; that deletion must not take the new pod's route."""
    r = router(chp.api_url, Secrets(chp.auth_token))
    old, new = pod("alice"), pod("alice", ip="10.2.3.9")
    new["metadata"]["uid"] = "uid-alice-2"
    try:
        assert await r.ensure(old, POLICY) and await r.ensure(new, POLICY)
        assert await r.remove(old)
        route = chp.routes()["/user/alice/mcp"]
        assert (route["target"], route["uid"]) == ("http://10.2.3.9:8890", "uid-alice-2")
        assert await r.remove(new)
        assert "/user/alice/mcp" not in chp.routes()
    finally:
        await r.close()
