"""Non-finite numbers never reach a tool (issue 15 §2): ``timeout: NaN`` once ran ``sleep(15)``
to its end under a 5 s maximum, as ``min(nan, 5)`` is NaN and never ``<= 0``.

Sent as raw JSON (``NaN``, ``Infinity``, ``1e999``, ``"nan"``): the SDK client would write null.
"""

from __future__ import annotations

import httpx
import pytest

from tests.harness.jupyter import RunningSidecar
from tests.harness.mcp import MCP_HEADERS, call
from tests.harness.notebooks import unique
from tests.harness.raw_mcp import RawSession, audit_lines, result_text, sse_result

pytestmark = pytest.mark.timeout(120)

NON_FINITE = [float("nan"), float("inf"), float("-inf"), "nan", "-Infinity"]


@pytest.fixture(scope="module")
async def notebook(attacked_client) -> str:
    path = unique("finite")
    await call(attacked_client, "create_notebook", path=path)
    await call(attacked_client, "insert_cell", path=path, source="print('cell ran')")
    return path


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("execute_code", {"code": "print('scratch ran')"}),
        ("execute_cell", {"cell": 0}),
        ("insert_and_execute", {"source": "print('inserted ran')"}),
    ],
)
async def test_a_non_finite_timeout_is_refused_naming_it(
    raw: RawSession, attacked: RunningSidecar, notebook: str, tool: str, arguments: dict, value: object
) -> None:
    result = await raw.call(tool, {"path": notebook, **arguments, "timeout": value})
    message = result_text(result)
    assert result.get("isError") is True, message
    assert "argument timeout" in message and "not a finite number" in message, message
    assert "ran" not in message  # nothing was executed
    line = audit_lines(attacked)[-1]
    assert (line["tool"], line["outcome"]) == (tool, "error") and "finite" in line["error"]


async def test_json_overflow_to_infinity_is_refused(raw: RawSession, notebook: str) -> None:
    """``1e999`` is a valid JSON number that parses as infinity."""
    message = '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"execute_code",'
    message += f'"arguments":{{"path":"{notebook}","code":"1","timeout":1e999}}}}}}'
    headers = {**raw.headers, "Mcp-Session-Id": raw.session_id}
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(raw.sidecar.url, content=message, headers={**MCP_HEADERS, **headers})
    result = sse_result(response.text)
    assert result.get("isError") is True and "argument timeout is inf" in result_text(result), result


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
async def test_a_non_finite_wait_is_refused(raw: RawSession, value: object) -> None:
    result = await raw.call("get_execution", {"execution_id": "x", "wait": value})
    assert result.get("isError") is True
    assert "argument wait" in result_text(result) and "not a finite number" in result_text(result)


async def test_finite_numbers_still_work(raw: RawSession, notebook: str) -> None:
    result = await raw.call("execute_code", {"path": notebook, "code": "print(6 * 7)", "timeout": 4.5})
    assert result.get("isError") is not True and "42" in result_text(result), result
