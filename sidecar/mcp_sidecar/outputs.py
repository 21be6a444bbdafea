"""Output shaping: notebook outputs in, what an agent should read out. Pure, no I/O.

Agents pay for every character, and clients break on megabyte answers, so outputs are
rendered to their most useful form (ANSI stripped, ``ename: evalue`` + a cleaned traceback,
PNG as an image, the richest text for anything else) and capped: head and tail are kept and
the cut says exactly how to read the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks) and lone escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

# Richest text first: what an agent can read best when no plain text is offered.
TEXT_MIME_ORDER = (
    "text/markdown",
    "text/plain",
    "application/json",
    "text/latex",
    "text/html",
    "image/svg+xml",
    "application/javascript",
)
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# What stands in a kept output for an image no answer can return (over the cap): its size and the
# note the answer shows, so the base64 is not held in memory for nothing.
LEFT_OUT_IMAGE = "application/x-mcp-left-out-image"


def base64_size(data: str) -> int:
    """Decoded size in bytes of base64 text, without decoding or copying it."""
    length = len(data) - data.count("\n") - data.count(" ")
    tail = data.rstrip()[-2:]
    return max(0, length * 3 // 4 - tail.count("="))


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    mime_type: str
    data: str  # base64, as stored in the notebook

    @property
    def size(self) -> int:
        """Decoded size in bytes, without decoding (or copying the data)."""
        return base64_size(self.data)


Part = TextPart | ImagePart


@dataclass
class Shaped:
    """What is returned to the agent, and what was left out."""

    parts: list[Part] = field(default_factory=list)
    total_chars: int = 0  # length of the whole rendered text, before any cut
    cut_chars: int = 0
    dropped_images: int = 0

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _joined(value: str | Iterable[str] | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else "".join(value)


def clean_traceback(lines: Iterable[str]) -> str:
    """The traceback as plain text: ANSI colours stripped, blank frames dropped."""
    text = "\n".join(strip_ansi(line).rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def render_error(output: Mapping[str, Any]) -> str:
    head = f"{output.get('ename', 'Error')}: {strip_ansi(str(output.get('evalue', '')))}"
    traceback = clean_traceback(output.get("traceback") or [])
    return f"{head}\n{traceback}" if traceback else head


def render_output(output: Mapping[str, Any]) -> list[Part]:
    """One nbformat output as text and image parts."""
    kind = output.get("output_type")
    if kind == "stream":
        return [TextPart(strip_ansi(_joined(output.get("text"))))]
    if kind == "error":
        return [TextPart(render_error(output) + "\n")]
    if kind in ("execute_result", "display_data"):
        data: Mapping[str, Any] = output.get("data") or {}
        parts: list[Part] = []
        left_out = data.get(LEFT_OUT_IMAGE)
        if isinstance(left_out, Mapping):
            parts.append(TextPart(str(left_out.get("note", "[an image was left out]\n"))))
        image = next((m for m in IMAGE_MIMES if m in data), None)
        if image:
            parts.append(ImagePart(image, _joined(data[image]).strip()))
        text_mime = next((m for m in TEXT_MIME_ORDER if m in data), None)
        # An image with only a "<Figure ...>" repr: the repr adds nothing, but keep it short anyway.
        if text_mime:
            text = data[text_mime]
            text = text if isinstance(text, str | list) else _json_text(text)
            parts.append(TextPart(strip_ansi(_joined(text)).rstrip("\n") + "\n"))
        elif not image and not left_out and data:
            parts.append(TextPart(f"[output of type {', '.join(sorted(data))} not shown as text]\n"))
        return parts
    return [TextPart(f"[unknown output type {kind!r}]\n")]


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)


def render_outputs(outputs: Iterable[Mapping[str, Any]]) -> list[Part]:
    """All outputs, consecutive text merged so streams read as one text."""
    merged: list[Part] = []
    for output in outputs:
        for part in render_output(output):
            if isinstance(part, TextPart) and merged and isinstance(merged[-1], TextPart):
                merged[-1] = TextPart(merged[-1].text + part.text)
            else:
                merged.append(part)
    return [p for p in merged if not (isinstance(p, TextPart) and not p.text)]


def _cut_note(total: int, head_len: int, cut: int, more_hint: Callable[[int], str] | None) -> str:
    how = f"; {more_hint(head_len)}" if more_hint else ""
    return (
        f"\n[... output cut: {cut} of {total} characters left out "
        f"(characters {head_len} to {head_len + cut}){how} ...]\n"
    )


def cut_text(text: str, max_chars: int, more_hint: Callable[[int], str] | None = None) -> tuple[str, int]:
    """Keep head and tail of ``text`` within ``max_chars``; return the text and how much was cut.

    ``more_hint(offset)`` names the call that reads on from ``offset`` (the first cut character).
    """
    kept = _cut_across([text], max_chars, more_hint)
    return kept[0], max(0, len(text) - max_chars)


def shape(
    outputs: Iterable[Mapping[str, Any]],
    max_chars: int,
    max_image_bytes: int,
    *,
    offset: int = 0,
    more_hint: Callable[[int], str] | None = None,
) -> Shaped:
    """Render and cap outputs for one answer.

    Text from all outputs counts against one ``max_chars`` budget (images never hide text, and
    the text cut keeps the first and last characters). ``offset`` skips that many characters of
    the rendered text, for reading on after a cut; images are then left out, as they were shown.
    """
    if offset < 0:
        raise ValueError(f"output_offset must be >= 0, got {offset}")
    parts = render_outputs(outputs)
    total = sum(len(p.text) for p in parts if isinstance(p, TextPart))
    result = Shaped(total_chars=total)
    if offset:
        text = "".join(p.text for p in parts if isinstance(p, TextPart))[offset:]
        window = text[:max_chars]
        rest = len(text) - len(window)
        if rest and more_hint:
            window += (
                f"\n[... {rest} more characters after character {offset + len(window)}; "
                f"{more_hint(offset + len(window))} ...]\n"
            )
        result.cut_chars = rest
        result.parts = [TextPart(window)] if window else []
        return result

    text_budget = max_chars
    image_budget = max_image_bytes
    # Texts are cut as one: measure the whole text first, then cut across part boundaries.
    kept_texts = _cut_across([p.text for p in parts if isinstance(p, TextPart)], text_budget, more_hint)
    result.cut_chars = max(0, total - text_budget)
    texts = iter(kept_texts)
    for part in parts:
        if isinstance(part, ImagePart):
            if part.size <= image_budget:
                image_budget -= part.size
                result.parts.append(part)
            else:
                result.dropped_images += 1
                result.parts.append(TextPart(image_note(part.mime_type, part.size, max_image_bytes)))
        else:
            kept = next(texts)
            if kept:
                result.parts.append(TextPart(kept))
    return result


def _cut_across(texts: list[str], max_chars: int, more_hint: Callable[[int], str] | None) -> list[str]:
    """Per text, the characters kept when the concatenated texts are cut to head + tail.

    Two thirds of the budget go to the head (where the story starts), one third to the tail
    (where the error or the result usually is); the note sits where the cut is.
    """
    total = sum(len(t) for t in texts)
    if total <= max_chars:
        return list(texts)
    head_len = max_chars * 2 // 3
    tail_start = total - (max_chars - head_len)
    note = _cut_note(total, head_len, tail_start - head_len, more_hint)
    kept: list[str] = []
    start = 0
    noted = False
    for text in texts:
        end = start + len(text)
        piece = text[: max(0, min(end, head_len) - start)]
        if not noted and end > head_len:
            piece += note
            noted = True
        if end > tail_start:
            piece += text[max(0, tail_start - start) :]
        kept.append(piece)
        start = end
    return kept


def image_note(mime_type: str, size: int, max_image_bytes: int) -> str:
    why = (
        "images are not shown here"
        if max_image_bytes == 0
        else f"over the {max_image_bytes}-byte image limit for one answer"
    )
    return f"[image {mime_type} of {size} bytes left out: {why}]\n"


def leave_out_big_images(outputs: list[dict[str, Any]], max_image_bytes: int) -> list[dict[str, Any]]:
    """The outputs with every image no answer can return (over ``max_image_bytes``) replaced by its
    note: what a finished run keeps once its outputs are saved. Never decodes an image."""
    kept: list[dict[str, Any]] = []
    for output in outputs:
        data = output.get("data")
        if isinstance(data, dict):
            big = [
                (m, size)
                for m in IMAGE_MIMES
                if m in data and max_image_bytes and (size := base64_size(_joined(data[m]))) > max_image_bytes
            ]
            if big:
                data = {k: v for k, v in data.items() if k not in {m for m, _ in big}}
                mime, size = big[0]
                data[LEFT_OUT_IMAGE] = {"note": image_note(mime, size, max_image_bytes)}
                output = {**output, "data": data}
        kept.append(output)
    return kept


def output_from_message(msg_type: str, content: Mapping[str, Any]) -> dict[str, Any] | None:
    """An nbformat output from a kernel iopub message, or None if the message is not an output."""
    if msg_type == "stream":
        name = content.get("name", "stdout")
        return {"output_type": "stream", "name": name, "text": content.get("text", "")}
    if msg_type in ("display_data", "update_display_data"):
        return {
            "output_type": "display_data",
            "data": dict(content.get("data") or {}),
            "metadata": dict(content.get("metadata") or {}),
        }
    if msg_type == "execute_result":
        return {
            "output_type": "execute_result",
            "data": dict(content.get("data") or {}),
            "metadata": dict(content.get("metadata") or {}),
            "execution_count": content.get("execution_count"),
        }
    if msg_type == "error":
        return {
            "output_type": "error",
            "ename": content.get("ename", ""),
            "evalue": content.get("evalue", ""),
            "traceback": list(content.get("traceback") or []),
        }
    return None


def append_output(outputs: list[dict[str, Any]], output: dict[str, Any]) -> None:
    """Append like Jupyter does: consecutive stream text of the same name is merged, ``\\r`` honoured."""
    if (
        output["output_type"] == "stream"
        and outputs
        and outputs[-1]["output_type"] == "stream"
        and outputs[-1]["name"] == output["name"]
    ):
        outputs[-1] = {**outputs[-1], "text": _joined(outputs[-1]["text"]) + output["text"]}
    else:
        outputs.append(output)
