"""Output shaping (mcp_sidecar.outputs): pure, so tested exhaustively here."""

from __future__ import annotations

import base64

import pytest
from mcp_sidecar.outputs import (
    ImagePart,
    TextPart,
    append_output,
    clean_traceback,
    cut_text,
    output_from_message,
    render_output,
    render_outputs,
    shape,
    strip_ansi,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 100).decode()


def stream(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def hint(at: int) -> str:
    return f"read_cell(output_offset={at})"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[1;32;40mbold\x1b[m plain", "bold plain"),
        ("\x1b]0;title\x07after", "after"),
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("cursor\x1b[2K\x1b[1Gmoved", "cursormoved"),
        ("no escapes at all", "no escapes at all"),
    ],
)
def test_strip_ansi(raw: str, clean: str) -> None:
    assert strip_ansi(raw) == clean


def test_error_is_ename_evalue_and_clean_traceback() -> None:
    output = {
        "output_type": "error",
        "ename": "ZeroDivisionError",
        "evalue": "division by zero",
        "traceback": [
            "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
            "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)",
            "Cell \x1b[0;32mIn[1], line 1\x1b[0m\n"
            "\x1b[0;32m----> 1\x1b[0m \x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39m0",
            "",
            "",
            "",
            "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
        ],
    }
    [part] = render_output(output)
    assert isinstance(part, TextPart)
    assert part.text.startswith("ZeroDivisionError: division by zero\n")
    assert "\x1b" not in part.text
    assert "----> 1 1/0" in part.text
    assert "\n\n\n" not in part.text


def test_clean_traceback_strips_and_trims() -> None:
    assert clean_traceback(["", "\x1b[31ma\x1b[0m  ", "", "", "", "b", ""]) == "a\n\nb"


def test_png_becomes_image_and_text_repr_kept() -> None:
    output = {"output_type": "display_data", "data": {"image/png": PNG + "\n", "text/plain": "<Figure>"}}
    parts = render_output(output)
    assert parts[0] == ImagePart("image/png", PNG)
    assert parts[1] == TextPart("<Figure>\n")
    assert parts[0].size == 108


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"text/html": "<b>x</b>", "text/plain": "x"}, "x\n"),
        ({"text/markdown": "**md**", "text/plain": "md", "text/html": "<b>md</b>"}, "**md**\n"),
        ({"text/html": "<table></table>"}, "<table></table>\n"),
        ({"application/json": {"a": 1}}, '{\n "a": 1\n}\n'),
        ({"text/latex": "$x^2$"}, "$x^2$\n"),
        ({"application/vnd.custom": "zzz"}, "[output of type application/vnd.custom not shown as text]\n"),
    ],
)
def test_richest_text_is_chosen(data: dict, expected: str) -> None:
    [part] = render_output({"output_type": "execute_result", "data": data, "execution_count": 1})
    assert part == TextPart(expected)


def test_stream_list_text_and_ansi() -> None:
    assert render_output(stream(["a\x1b[1m", "b"])) == [TextPart("ab")]  # type: ignore[arg-type]


def test_unknown_output_type_is_named() -> None:
    assert render_output({"output_type": "weird"}) == [TextPart("[unknown output type 'weird']\n")]


def test_render_outputs_merges_consecutive_text_and_drops_empty() -> None:
    parts = render_outputs(
        [
            stream("a"),
            stream(""),
            stream("b", "stderr"),
            {"output_type": "display_data", "data": {"image/png": PNG}},
            stream("c"),
        ]
    )
    assert parts == [TextPart("ab"), ImagePart("image/png", PNG), TextPart("c")]


def test_short_output_passes_unchanged() -> None:
    shaped = shape([stream("hello\n")], 100, 1000)
    assert shaped.parts == [TextPart("hello\n")]
    assert shaped.cut_chars == 0
    assert shaped.total_chars == 6


def test_million_char_print_is_capped_with_head_tail_and_instructions() -> None:
    text = "H" * 10 + "x" * 999_980 + "T" * 10
    shaped = shape([stream(text)], 20_000, 1 << 20, more_hint=hint)
    out = shaped.text
    assert len(out) < 20_300
    assert out.startswith("H" * 10)
    assert out.rstrip("\n").endswith("T" * 10)
    assert shaped.cut_chars == 1_000_000 - 20_000
    assert "980000 of 1000000 characters left out" in out
    assert "read_cell(output_offset=13333)" in out


def test_cut_is_exact_to_budget_apart_from_the_note() -> None:
    text = "".join(chr(65 + i % 26) for i in range(1000))
    kept, cut = cut_text(text, 90, hint)
    head, _, rest = kept.partition("\n[...")
    tail = rest.split("...]\n", 1)[1]
    assert head == text[:60]
    assert tail == text[-30:]
    assert cut == 910


def test_cut_across_several_outputs_keeps_order_and_images() -> None:
    outputs = [
        stream("a" * 50),
        {"output_type": "display_data", "data": {"image/png": PNG}},
        stream("b" * 50),
        stream("c" * 50, "stderr"),
    ]
    shaped = shape(outputs, 60, 1 << 20, more_hint=hint)
    kinds = [type(p).__name__ for p in shaped.parts]
    assert kinds == ["TextPart", "ImagePart", "TextPart"]
    first, _, last = shaped.parts
    assert first.text == "a" * 40 + first.text[40:]  # head of the first stream
    assert "output cut" in first.text
    assert last.text.endswith("c" * 20)
    assert shaped.cut_chars == 150 - 60


def test_nothing_returned_twice() -> None:
    text = "".join(f"{i:06d}\n" for i in range(5000))
    shaped = shape([stream(text)], 700, 0, more_hint=hint)
    lines = [ln for ln in shaped.text.splitlines() if ln.isdigit()]
    assert len(lines) == len(set(lines))


def test_offset_reads_on_from_the_cut() -> None:
    text = "".join(f"{i:06d}\n" for i in range(5000))  # 35000 chars
    first = shape([stream(text)], 700, 0, more_hint=hint)
    assert "output_offset=466" in first.text
    window = shape([stream(text)], 700, 0, offset=466, more_hint=hint)
    assert window.text.startswith(text[466:1166])
    assert f"{35000 - 1166} more characters after character 1166" in window.text
    assert "output_offset=1166" in window.text
    last = shape([stream(text)], 700, 0, offset=34_900, more_hint=hint)
    assert last.text == text[34_900:]


def test_images_over_budget_are_replaced_by_a_note() -> None:
    big = base64.b64encode(b"\0" * 3000).decode()
    outputs = [
        {"output_type": "display_data", "data": {"image/png": PNG}},
        {"output_type": "display_data", "data": {"image/png": big}},
    ]
    shaped = shape(outputs, 1000, 2000)
    assert isinstance(shaped.parts[0], ImagePart)
    assert isinstance(shaped.parts[1], TextPart)
    assert "image image/png of 3000 bytes left out" in shaped.parts[1].text
    assert shaped.dropped_images == 1


def test_output_from_message_kinds() -> None:
    assert output_from_message("stream", {"name": "stderr", "text": "e"}) == stream("e", "stderr")
    assert output_from_message("execute_result", {"data": {"text/plain": "2"}, "execution_count": 3}) == {
        "output_type": "execute_result",
        "data": {"text/plain": "2"},
        "metadata": {},
        "execution_count": 3,
    }
    assert output_from_message("error", {"ename": "E", "evalue": "v", "traceback": ["t"]})["ename"] == "E"
    assert output_from_message("display_data", {"data": {"a": 1}})["output_type"] == "display_data"
    assert output_from_message("status", {"execution_state": "idle"}) is None
    assert output_from_message("execute_input", {"code": "1"}) is None


def test_append_output_merges_streams_of_same_name_only() -> None:
    outputs: list[dict] = []
    append_output(outputs, stream("a"))
    append_output(outputs, stream("b"))
    append_output(outputs, stream("c", "stderr"))
    append_output(outputs, {"output_type": "display_data", "data": {}, "metadata": {}})
    append_output(outputs, stream("d"))
    assert [o.get("text") for o in outputs] == ["ab", "c", None, "d"]
