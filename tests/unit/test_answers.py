"""Answer rendering (mcp_sidecar.answers): pure, so each answer is checked to the character."""

from __future__ import annotations

import base64
import time
from typing import Any

from mcp.types import ImageContent, TextContent
from mcp_sidecar import answers
from mcp_sidecar.jupyter.kernels import Execution
from mcp_sidecar.outputs import ImagePart, Shaped, TextPart, shape

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 100).decode()


def message(kind: str, eid: str, channel: str = "iopub", **content: Any) -> dict[str, Any]:
    return {
        "channel": channel,
        "header": {"msg_type": kind},
        "parent_header": {"msg_id": eid},
        "content": content,
    }


def execution(
    *outputs: dict[str, Any],
    reply: str | None = "ok",
    began: bool = True,
    elapsed: float = 2.4,
    cell: bool = False,
) -> Execution:
    """An execution of scratch code (or of a notebook cell) that the kernel answered with these
    iopub messages and, unless ``reply`` is None, finished with that reply status."""
    run = Execution(
        id="e1", kernel_id="k1", code="x", path="nb.ipynb" if cell else None, cell_id="c1" if cell else None
    )
    if began:
        run.apply(message("status", "e1", execution_state="busy"))
        run.apply(message("execute_input", "e1", code="x", execution_count=4))
    for output in outputs:
        run.apply(output)
    if reply is not None:
        run.apply(message("execute_reply", "e1", "shell", status=reply, execution_count=4))
        run.apply(message("status", "e1", execution_state="idle"))
    run.started = (run.finished_at or time.monotonic()) - elapsed
    return run


def stream(text: str) -> dict[str, Any]:
    return message("stream", "e1", name="stdout", text=text)


def texts(result: Any) -> list[str]:
    return [b.text for b in result.content if isinstance(b, TextContent)]


def answer(run: Execution, max_chars: int = 1000, max_image_bytes: int = 10_000, offset: int = 0) -> Any:
    shaped = shape(
        run.outputs, max_chars, max_image_bytes, offset=offset, more_hint=answers.read_on_hint(run)
    )
    return answers.execution_answer(run, shaped)


# -- executions ------------------------------------------------------------------------------------


async def test_ok_returns_the_outputs_and_the_structure() -> None:
    result = answer(execution(stream("hello\n")))
    assert texts(result) == ["hello\n"]
    assert result.is_error is False
    assert result.structured_content == {
        "status": "ok",
        "execution_id": "e1",
        "execution_count": 4,
        "cell_id": None,
        "kernel_id": "k1",
        "elapsed_s": 2.4,
        "output_chars": 6,
    }


async def test_ok_without_output_says_so() -> None:
    result = answer(execution())
    assert texts(result) == ["[ok, no output]"]
    assert result.structured_content["output_chars"] == 0


async def test_error_shows_the_error_and_is_not_a_tool_error() -> None:
    error = message(
        "error",
        "e1",
        ename="ZeroDivisionError",
        evalue="division by zero",
        traceback=["\x1b[31mTraceback\x1b[0m"],
    )
    result = answer(execution(stream("before\n"), error, reply="error"))
    assert texts(result) == ["before\nZeroDivisionError: division by zero\nTraceback\n"]
    assert result.structured_content["status"] == "error"
    assert result.is_error is False  # the code failed, not the tool


async def test_error_without_output_says_error_no_output() -> None:
    assert texts(answer(execution(reply="error"))) == ["[error, no output]"]


async def test_aborted_says_nothing_ran() -> None:
    result = answer(execution(reply="aborted", began=False))
    assert texts(result) == [
        "[aborted: the kernel skipped this code (an earlier request failed); nothing ran]"
    ]
    assert result.structured_content["status"] == "aborted"


async def test_timeout_says_the_kernel_was_interrupted_after_what_it_printed() -> None:
    run = execution(stream("step 1\n"), reply=None)
    run.time_out(30.0)
    run.apply(message("error", "e1", ename="KeyboardInterrupt", evalue="", traceback=[]))
    run.apply(message("execute_reply", "e1", "shell", status="error"))
    run.apply(message("status", "e1", execution_state="idle"))
    result = answer(run)
    assert texts(result) == [
        "step 1\nKeyboardInterrupt: \n",
        "[timed out after 30 s: kernel k1 was interrupted; the output above is what it produced until then]",
    ]
    assert result.structured_content["status"] == "timeout"
    assert result.is_error is False


async def test_kernel_lost_is_a_tool_error_with_the_reason_and_what_came_before() -> None:
    run = execution(stream("partial\n"), reply=None)
    reason = "kernel k1 died while this was running and Jupyter restarted it: all variables are lost"
    run.fail(reason)
    result = answer(run)
    assert texts(result) == ["partial\n", f"[{reason}]"]
    assert result.is_error is True
    assert result.structured_content["status"] == "kernel-lost"


async def test_kernel_lost_without_output_shows_only_the_reason() -> None:
    run = execution(reply=None, began=False)
    run.fail("kernel k1 is gone (shut down or culled)")
    assert texts(answer(run)) == ["[kernel k1 is gone (shut down or culled)]"]


async def test_still_running_points_to_get_execution() -> None:
    run = execution(stream("begun\n"), reply=None, elapsed=51.2)
    result = answer(run)
    assert texts(result) == [
        "begun\n",
        "[still running after 51 s; outputs so far above. "
        "Call get_execution(execution_id='e1') to wait for the rest]",
    ]
    assert result.structured_content["status"] == "running"


async def test_queued_says_nothing_was_interrupted() -> None:
    run = execution(reply=None, began=False, elapsed=12.0)
    [note] = texts(answer(run))
    assert note.startswith(
        "[queued: kernel k1 is still running other code (another session's or the notebook"
    )
    assert "has not started after 12 s, and nothing was interrupted" in note
    assert "get_execution(execution_id='e1')" in note and note.endswith(
        "interrupt_kernel to stop the code running now]"
    )


async def test_a_failed_save_is_said_after_the_outputs() -> None:
    run = execution(stream("1\n"), cell=True)
    run.save_error = "outputs not saved into the notebook: no cell 'c1'"
    result = answer(run)
    assert texts(result) == ["1\n", "[outputs not saved into the notebook: no cell 'c1']"]
    assert result.structured_content["cell_id"] == "c1" and result.is_error is False


async def test_images_become_image_blocks_between_texts() -> None:
    figure = message("display_data", "e1", data={"image/png": PNG, "text/plain": "<Figure>"}, metadata={})
    result = answer(execution(stream("plot:\n"), figure))
    assert [type(b) for b in result.content] == [TextContent, ImageContent, TextContent]
    image = result.content[1]
    assert isinstance(image, ImageContent) and image.data == PNG and image.mime_type == "image/png"
    assert texts(result) == ["plot:\n", "<Figure>\n"]


async def test_an_image_over_the_limit_is_named_not_sent() -> None:
    figure = message("display_data", "e1", data={"image/png": PNG}, metadata={})
    result = answer(execution(figure), max_image_bytes=10)
    assert texts(result) == [
        "[image image/png of 108 bytes left out: over the 10-byte image limit for one answer]\n"
    ]


async def test_a_cut_names_the_call_that_reads_on_scratch_code_from_the_execution() -> None:
    result = answer(execution(stream("x" * 100)), max_chars=30)
    [text] = texts(result)
    assert text.startswith("x" * 20) and text.endswith("x" * 10)
    assert "[... output cut: 70 of 100 characters left out (characters 20 to 90); " in text
    assert "read on with get_execution(execution_id='e1', output_offset=20) ...]" in text
    assert result.structured_content["output_chars"] == 100


async def test_a_cut_names_read_cell_for_a_notebook_cell() -> None:
    [text] = texts(answer(execution(stream("x" * 100), cell=True), max_chars=30))
    assert "read on with read_cell(path='nb.ipynb', cell='c1', output_offset=20) ...]" in text


async def test_reading_on_from_an_offset_says_how_much_is_left() -> None:
    [text] = texts(answer(execution(stream("0123456789" * 5)), max_chars=10, offset=20))
    assert text == (
        "0123456789\n[... 20 more characters after character 30; "
        "read on with get_execution(execution_id='e1', output_offset=30) ...]\n"
    )


async def test_progress_messages() -> None:
    assert answers.progress_message(execution(reply=None, began=False, elapsed=3.2)) == (
        "queued 3 s: the kernel is running other code"
    )
    running = execution(stream("a\n"), message("display_data", "e1", data={"text/plain": "b"}), reply=None)
    assert answers.progress_message(running) == "running 2 s, 2 output(s) so far"


# -- cells, notebooks, listings --------------------------------------------------------------------


CELL = {"cell_type": "code", "execution_count": 7, "source": "a = 1\nb = 2\nc = 3", "outputs": []}


def test_a_cell_with_outputs() -> None:
    shaped = Shaped(parts=[TextPart("3\n"), ImagePart("image/png", PNG)], total_chars=2)
    result = answers.cell_answer(2, "c1", CELL, "a = 1\nb = 2\nc = 3", shaped, output_offset=0)
    assert texts(result) == ["[2] code id=c1 [7]\na = 1\nb = 2\nc = 3", ">>> output:", "3\n"]
    assert isinstance(result.content[-1], ImageContent)
    assert result.structured_content == {
        "index": 2,
        "cell_id": "c1",
        "cell_type": "code",
        "execution_count": 7,
        "output_chars": 2,
    }


def test_a_cell_without_outputs_and_reading_on_past_the_end() -> None:
    markdown = {"cell_type": "markdown", "source": "# Title"}
    assert texts(answers.cell_answer(0, "m1", markdown, "# Title", Shaped(), output_offset=0)) == [
        "[0] markdown id=m1\n# Title"
    ]
    assert texts(answers.cell_answer(0, "c1", CELL, "", Shaped(total_chars=5), output_offset=5)) == [
        "(no more output)"
    ]


def test_reading_on_in_a_cell_leaves_out_its_source() -> None:
    shaped = Shaped(parts=[TextPart("rest")], total_chars=9)
    assert texts(answers.cell_answer(0, "c1", CELL, "a", shaped, output_offset=5)) == [">>> output:", "rest"]


def test_cell_summaries_brief_full_and_with_outputs() -> None:
    source = "a = 1\nb = 2\nc = 3"
    assert (
        answers.cell_summary(0, "c1", CELL, source, "brief") == "--- [0] code id=c1 [7]\na = 1  … (+2 lines)"
    )
    assert answers.cell_summary(0, "c1", CELL, source, "full") == f"--- [0] code id=c1 [7]\n{source}"
    assert (
        answers.cell_summary(0, "c1", CELL, "x", "brief", "6\n\n")
        == "--- [0] code id=c1 [7]\nx\n>>> output:\n6"
    )
    never_run = {"cell_type": "code", "execution_count": None}
    assert answers.cell_summary(3, "", never_run, "", "brief") == "--- [3] code id=\n"


def test_a_notebook_page_says_which_cells_are_not_shown() -> None:
    page = answers.notebook_answer("nb.ipynb", 5, 2, ["--- [0] a", "--- [1] b"], 1000)
    assert texts(page) == [
        "nb.ipynb: 5 cells\n--- [0] a\n--- [1] b\n[cells 2..4 not shown: call again with offset=2]"
    ]
    assert page.structured_content is None
    assert texts(answers.notebook_answer("nb.ipynb", 0, 0, [], 1000)) == ["nb.ipynb: 0 cells"]


def test_a_long_notebook_page_is_cut_with_advice() -> None:
    [text] = texts(answers.notebook_answer("nb.ipynb", 1, 1, ["y" * 500], 90))
    assert "read fewer cells with offset/limit, or one cell with read_cell" in text
    assert text.startswith("nb.ipynb: 1 cells\n") and text.endswith("y" * 30)


def test_a_listing_page_and_the_next_offset() -> None:
    entries = [
        {"path": "data", "name": "data", "type": "directory"},
        {"path": "a.ipynb", "name": "a.ipynb", "type": "notebook", "size": 12, "last_modified": "2026-01-01"},
        {"path": "b.txt", "name": "b.txt", "type": "file", "size": None},
    ]
    result = answers.listing_answer("", entries, 0, 2)
    assert texts(result) == [
        "data/\na.ipynb\tnotebook\t12 bytes\t2026-01-01\n[1 more entries: call again with offset=2]"
    ]
    assert result.structured_content == {
        "total": 3,
        "entries": [
            {"path": "data", "type": "directory", "size": None, "last_modified": None},
            {"path": "a.ipynb", "type": "notebook", "size": 12, "last_modified": "2026-01-01"},
        ],
    }
    assert texts(answers.listing_answer("", entries, 2, 2)) == ["b.txt\tfile\t0 bytes\t"]
    assert texts(answers.listing_answer("sub", [], 0, 10)) == ["(no entries under 'sub')"]
    assert texts(answers.listing_answer("", [], 0, 10)) == ["(no entries under '/')"]


def test_kernels() -> None:
    rows = [{"id": "k1", "name": "python3", "state": "idle", "notebook": "a.ipynb", "last_activity": None}]
    result = answers.kernels_answer(rows)
    assert texts(result) == ["k1\tpython3\tidle\ta.ipynb"]
    assert result.structured_content == {"kernels": rows}
    assert texts(answers.kernels_answer([{**rows[0], "notebook": None}])) == ["k1\tpython3\tidle\t-"]
    assert texts(answers.kernels_answer([])) == ["(no kernels running)"]


def test_a_text_answer() -> None:
    result = answers.text_answer("created a.ipynb", path="a.ipynb")
    assert texts(result) == ["created a.ipynb"] and result.structured_content == {"path": "a.ipynb"}
    assert answers.text_answer("plain").structured_content is None
