"""Shared fixtures live in tests/fixtures/, one module per real component; the helpers they and the
tests use live in tests/harness/ (asserts there are rewritten too, for readable failures)."""

import pytest

pytest.register_assert_rewrite("tests.harness")

pytest_plugins = [
    "tests.fixtures.tools",
    "tests.fixtures.jupyter",
    "tests.fixtures.hub",
    "tests.fixtures.controlplane",
    "tests.fixtures.nodeagent",
    "tests.fixtures.z2jh",
]
