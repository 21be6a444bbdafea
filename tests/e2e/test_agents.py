"""Two users, two agents, real clients written elsewhere, all through the proxy.

Alice's agent uses the official MCP Python SDK over Streamable HTTP; Bob's agent is a stdio client
behind ``mcp-remote`` (npm), which bridges to HTTP with the Authorization header.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.harness.demo import DemoProcess, User
from tests.harness.mcp import INITIALIZE, MCP_HEADERS, call, fails, held_client, mcp_remote_client, text
from tests.harness.notebooks import saved_notebook, sources
from tests.harness.ydoc import human, wait_until

pytestmark = pytest.mark.e2e

SAME_NAME = "analysis.ipynb"
ROUNDS = 6


async def notebook_on_server(user: User, path: str, cells: int, *, with_outputs: bool = False) -> dict:
    """The notebook as the user's own server saved it (Contents API through the proxy), once it has
    ``cells`` cells (and, ``with_outputs``, an output in each): the collaboration room saves a moment
    after a change, sources and outputs apart, and nothing announces the write, so this polls the
    saved file (bounded; a read that lands on a save in progress is read again)."""

    def complete(notebook: dict) -> bool:
        found = notebook["cells"]
        return len(found) >= cells and (not with_outputs or all(c.get("outputs") for c in found))

    return await saved_notebook(user.server, path, until=complete, timeout=60)


async def test_alice_and_bob_work_at_once_and_every_cell_lands_with_its_owner(
    demo: DemoProcess, alice: User, bob: User, tmp_path: Path
) -> None:
    async def agent(client, owner: str) -> list[str]:
        await call(client, "create_notebook", path=SAME_NAME)
        seen = []
        for i in range(ROUNDS):
            code = f"import os; print('{owner}-{i}', os.environ['JUPYTERHUB_USER'])"
            result = await call(client, "insert_and_execute", path=SAME_NAME, source=code)
            seen.append(text(result))
        return seen

    # Each agent runs from the configuration the demo handed its user: Alice's client speaks
    # Streamable HTTP itself (url + headers), Bob's host starts mcp-remote over stdio.
    alice_http = alice.mcp_json["mcpServers"]["jupyterhub"]
    assert alice_http["headers"] == {"Authorization": f"Bearer {alice.token}"}
    async with (
        held_client(alice_http["url"], alice.token) as alice_agent,
        mcp_remote_client(bob.mcp_json["mcpRemote"]["mcpServers"]["jupyterhub"], tmp_path) as bob_agent,
    ):
        alice_out, bob_out = await asyncio.gather(agent(alice_agent, "alice"), agent(bob_agent, "bob"))

    # Each kernel ran in its owner's server (the env var is the server's, not the client's claim).
    for i, out in enumerate(alice_out):
        assert f"alice-{i} alice" in out, out
    for i, out in enumerate(bob_out):
        assert f"bob-{i} bob" in out, out
    for user in (alice, bob):
        other = "bob" if user is alice else "alice"
        notebook = await notebook_on_server(user, SAME_NAME, ROUNDS, with_outputs=True)
        cells = sources(notebook)
        assert len(cells) == ROUNDS, cells
        assert all(f"'{user.name}-" in s for s in cells), cells
        assert f"'{other}-" not in json.dumps(notebook), f"one of {other}'s cells leaked into {user.name}'s"
        outputs = ["".join(o.get("text", "")) for c in notebook["cells"] for o in c["outputs"]]
        assert len(outputs) == ROUNDS, outputs
        for i, output in enumerate(outputs):
            assert f"{user.name}-{i} {user.name}" in output, outputs


async def test_bobs_token_is_refused_on_alices_endpoint(demo: DemoProcess, alice: User, bob: User) -> None:
    async def initialize_as(url: str, token: str | None) -> httpx.Response:
        headers = {**MCP_HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
        return await http.post(url, json=INITIALIZE, headers=headers)

    async with httpx.AsyncClient(timeout=60) as http:
        as_bob = await initialize_as(alice.url, bob.token)
        assert as_bob.status_code == 403, as_bob.text
        nobody = await initialize_as(alice.url, None)
        assert nobody.status_code == 401 and "bearer" in nobody.headers["www-authenticate"].lower()
        assert (await initialize_as(alice.url, "not-a-token")).status_code == 401
        # Bob's token is good on his own endpoint: the refusal was about the server, not the token.
        own = await initialize_as(bob.url, bob.token)
        assert own.status_code == 200, own.text
    # A real client cannot even initialize (the SDK wraps the HTTP error, without its status,
    # in task groups).
    with pytest.raises(BaseException) as refused:
        async with held_client(alice.url, bob.token):
            pass
    assert any(m.startswith("MCPError") for m in leaf_messages(refused.value)), leaf_messages(refused.value)


def leaf_messages(exc: BaseException) -> list[str]:
    """The messages at the bottom of (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [m for inner in exc.exceptions for m in leaf_messages(inner)]
    return [f"{type(exc).__name__}: {exc}"]


async def test_a_sessions_default_notebook_never_leaks(demo: DemoProcess, alice: User) -> None:
    async with (
        held_client(alice.url, alice.token) as first,
        held_client(alice.url, alice.token) as second,
        held_client(alice.url, alice.token) as third,
    ):
        await call(first, "create_notebook", path="first.ipynb")
        await call(second, "create_notebook", path="second.ipynb")
        await call(first, "open_notebook", path="first.ipynb")
        await call(second, "open_notebook", path="second.ipynb")

        async def write(client, tag: str) -> None:
            for i in range(5):
                await call(client, "insert_cell", source=f"# {tag} {i}")  # no path: the session default

        await asyncio.gather(write(first, "first"), write(second, "second"))
        assert "open_notebook" in await fails(third, "insert_cell", source="# third")

    first_cells = sources(await notebook_on_server(alice, "first.ipynb", 5))
    second_cells = sources(await notebook_on_server(alice, "second.ipynb", 5))
    assert first_cells == [f"# first {i}" for i in range(5)]
    assert second_cells == [f"# second {i}" for i in range(5)]


async def test_an_agents_edit_shows_up_in_a_second_y_client(demo: DemoProcess, alice: User) -> None:
    """A JupyterLab tab is a Y client in the notebook's collaboration room: agent edits reach it live."""
    path = "watched.ipynb"
    async with held_client(alice.url, alice.token) as agent:
        await call(agent, "create_notebook", path=path)
        # What a browser tab does: the user's server URL and token, through the proxy.
        async with human(alice.server, path) as (notebook, changed):
            await call(agent, "insert_cell", path=path, source="x = 6 * 7")
            await wait_until(changed, lambda: notebook.cell_number == 1, timeout=60)
            assert str(notebook.ycells[0]["source"]) == "x = 6 * 7"
            await call(agent, "edit_cell", path=path, cell=0, old="6 * 7", new="42")
            await wait_until(changed, lambda: str(notebook.ycells[0]["source"]) == "x = 42", timeout=60)
            await call(agent, "execute_cell", path=path, cell=0)
            await wait_until(changed, lambda: notebook.ycells[0]["execution_count"] is not None, timeout=60)
