"""What is wrong with a tool call's arguments, checked in one place for every tool. Pure.

The MCP SDK validates arguments against each tool's signature, but it lets non-finite numbers
through: JSON ``NaN``/``Infinity``, ``1e999`` (which parses as infinity) and strings such as
``"nan"`` (pydantic's lax float parsing). ``min(nan, maximum)`` is NaN and never ``<= 0``, so a NaN
timeout would defeat every limit. Checked after the SDK's own coercion, so every spelling is caught.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError


def non_finite(validated: Mapping[str, Any]) -> str | None:
    """The message for the first non-finite number among validated arguments, or None."""
    for name, value in validated.items():
        where = _first_non_finite(value, name)
        if where is not None:
            location, number = where
            return (
                f"argument {location} is {number}, not a finite number: send a plain finite "
                "number (e.g. 30), or leave it out to use its default"
            )
    return None


def _first_non_finite(value: Any, location: str) -> tuple[str, float] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return location, value
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_non_finite(item, f"{location}[{index}]")
            if found is not None:
                return found
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _first_non_finite(item, f"{location}.{key}")
            if found is not None:
                return found
    return None


def invalid(tool: str, exc: ValidationError) -> str:
    """The SDK's validation failure, said per argument: which one, what was sent, what is wanted."""
    problems = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
        if error.get("type") == "missing":
            problems.append(f"{location} is required")
        else:
            problems.append(f"{location}: {error.get('msg')} (got {error.get('input')!r})"[:300])
    return (
        f"invalid arguments for {tool}: {'; '.join(problems)}. Fix them and call again "
        "(tools/list shows each argument's type)"
    )
