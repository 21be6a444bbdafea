"""MCP tokens open MCP and nothing else (issue 15 §1), against the real hub, proxy, Jupyter server
and sidecar.

What the tokens this product mints (local mode's, through the real demo) can and cannot reach, the
tier a token's scope gives on the sidecar, and the policy switch refusing access:servers tokens.
(What the real hub does with the MCP custom scopes themselves: tests/operator/test_tokens.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from mcp_operator import endpoint

from tests.harness.demo import DemoProcess, User, running_demo
from tests.harness.hub import RunningHub
from tests.harness.jupyter import JupyterProcess, RunningSidecar, sidecar_in_process
from tests.harness.mcp import INITIALIZE, MCP_HEADERS, call, fails, mcp_client

pytestmark = [pytest.mark.timeout(600)]


# -- the minted token, end to end (real demo: hub, proxy, Jupyter server, sidecar) ------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    with running_demo(tmp_path_factory.mktemp("security") / "demo", "alice") as running:
        yield running


@pytest.fixture(scope="module")
def alice(demo: DemoProcess) -> User:
    return demo.users["alice"]


def test_minted_token_is_refused_by_the_jupyter_server(alice: User) -> None:
    """The MCP token handed out cannot write files or start kernels on the Jupyter server's own
    API through the proxy (the attack of issue 15: PUT contents -> 201, POST kernels -> 201)."""
    with httpx.Client(headers=alice.headers, timeout=30, follow_redirects=False) as http:
        put = http.put(
            f"{alice.server_url}api/contents/pwn.txt", json={"type": "file", "format": "text", "content": "x"}
        )
        assert put.status_code == 403, (put.status_code, put.text[:300])
        kernel = http.post(f"{alice.server_url}api/kernels", json={})
        assert kernel.status_code == 403, (kernel.status_code, kernel.text[:300])
    # The same request with a Jupyter credential works: the 403 was about the token, not the path.
    with httpx.Client(headers=alice.server.headers, timeout=30) as http:
        assert http.get(f"{alice.server_url}api/contents").status_code == 200


async def runs_code(url: str, token: str) -> None:
    """Creates a notebook and runs code in its kernel: the execute tier, all of it."""
    path = f"tier-{uuid.uuid4().hex[:8]}.ipynb"
    async with mcp_client(url, token) as client:
        await call(client, "create_notebook", path=path)
        answer = await call(client, "execute_code", path=path, code="print(6 * 7)")
        assert "42" in str(answer.content)


async def test_minted_token_carries_only_mcp_scopes_and_gets_the_policy_tier(
    demo: DemoProcess, alice: User
) -> None:
    scopes = httpx.get(f"{demo.hub_api}/user", headers=alice.headers, timeout=30).json()["scopes"]
    mine = [s for s in scopes if not s.startswith("read:users")]  # the hub's identify scopes
    assert set(mine) == {f"custom:mcp:{t}!server=alice/" for t in ("read", "edit", "execute")}, scopes
    await runs_code(alice.url, alice.token)  # the demo policy's mode is execute


async def test_read_token_cannot_edit_or_execute(demo: DemoProcess, alice: User) -> None:
    read_token = demo.mint("alice", [endpoint.mcp_scope("alice", "", "read")])
    name = f"read-only-{uuid.uuid4().hex[:8]}.ipynb"
    async with mcp_client(alice.url, read_token) as client:
        await call(client, "list_files")
        refused = await fails(client, "create_notebook", path=name)
        assert "custom:mcp:read" in refused and "custom:mcp:edit" in refused, refused
        refused = await fails(client, "execute_code", path=name, code="open('pwned', 'w').write('x')")
        assert "custom:mcp:execute" in refused, refused
    with httpx.Client(headers=alice.server.headers, timeout=30) as http:
        assert http.get(f"{alice.server_url}api/contents/{name}").status_code == 404
        assert http.get(f"{alice.server_url}api/contents/pwned").status_code == 404


# -- spec.auth.acceptServerAccess: false (the sidecar's MCP_ACCEPT_SERVER_ACCESS=0) ---------------


@pytest.fixture(scope="module")
async def strict_sidecar(jupyter: JupyterProcess, jupyterhub: RunningHub) -> AsyncIterator[RunningSidecar]:
    env = {
        "MCP_TOKEN": "",
        "JUPYTERHUB_API_URL": jupyterhub.api_url,
        "JUPYTERHUB_USER": "alice",
        "MCP_ACCEPT_SERVER_ACCESS": "0",
    }
    async with sidecar_in_process(jupyter, **env) as running:
        yield running


async def test_server_access_token_works_by_default_and_is_refused_when_the_policy_says_so(
    alice: User, strict_sidecar: RunningSidecar, jupyterhub: RunningHub
) -> None:
    # What users make by hand today keeps working while the policy accepts it (the default)...
    await runs_code(alice.url, alice.jupyter_token)
    # ...and not on a sidecar whose policy says acceptServerAccess: false.
    server_token, _ = jupyterhub.mint_token("alice", scopes=[endpoint.server_scope("alice")])
    mcp_token, _ = jupyterhub.mint_token("alice", scopes=endpoint.token_scopes("alice"))
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(
            strict_sidecar.url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Authorization": f"Bearer {server_token}"},
        )
        assert refused.status_code == 403, refused.text
        message = refused.json()["error"]
        assert "acceptServerAccess: false" in message and "custom:mcp:read!server=alice/" in message, message
        admitted = await http.post(
            strict_sidecar.url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Authorization": f"Bearer {mcp_token}"},
        )
        assert admitted.status_code == 200, admitted.text


def test_policy_switch_reaches_the_sidecar_environment() -> None:
    """spec.auth.acceptServerAccess: false in an MCPPolicy becomes the sidecar's variable."""
    from mcp_operator.injection import policy_environment
    from mcp_operator.policy import Policy

    strict = Policy.from_object({"metadata": {"name": "p"}, "spec": {"auth": {"acceptServerAccess": False}}})
    assert {"name": "MCP_ACCEPT_SERVER_ACCESS", "value": "0"} in policy_environment(strict)
    default = Policy.from_object({"metadata": {"name": "p"}, "spec": {}})
    assert not any(v["name"] == "MCP_ACCEPT_SERVER_ACCESS" for v in policy_environment(default))
