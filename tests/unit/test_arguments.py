"""The argument checks every tool call goes through (mcp_sidecar.arguments). Pure."""

from __future__ import annotations

import pytest
from mcp_sidecar import arguments
from pydantic import BaseModel, ValidationError


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=repr)
def test_non_finite_numbers_are_named(value: float) -> None:
    message = arguments.non_finite({"code": "1", "timeout": value})
    assert message is not None and message.startswith(f"argument timeout is {value}")
    assert "finite" in message and "leave it out" in message


def test_nested_non_finite_numbers_are_found_with_their_place() -> None:
    message = arguments.non_finite({"cells": [0, 1.5, float("nan")], "meta": {"x": float("inf")}})
    assert message is not None and "argument cells[2] is nan" in message


def test_finite_values_pass() -> None:
    assert arguments.non_finite({"timeout": 1e308, "cell": "nan", "cells": [0, -1], "wait": None}) is None


def test_validation_errors_name_each_argument() -> None:
    class Args(BaseModel):
        code: str
        timeout: float | None = None

    with pytest.raises(ValidationError) as caught:
        Args.model_validate({"timeout": "soon"})
    message = arguments.invalid("execute_code", caught.value)
    assert message.startswith("invalid arguments for execute_code: code is required; timeout")
    assert "'soon'" in message and "call again" in message
