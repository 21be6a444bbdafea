"""The z2jh tier: a failing test that used an ``McpStack`` fixture (tests/harness/z2jh_stack.py)
gets the hub, proxy, operator and node agent logs in its report."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.z2jh_stack import McpStack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, McpStack):
            try:
                report.sections.append(("z2jh stack diagnostics", value.diagnostics()))
            except Exception as e:  # the diagnostics must never hide the failure
                report.sections.append(("z2jh stack diagnostics", f"unavailable: {e!r}"))
