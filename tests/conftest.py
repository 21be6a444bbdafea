"""Shared fixtures live in tests/fixtures/, one module per real component."""

pytest_plugins = [
    "tests.fixtures.tools",
    "tests.fixtures.jupyter",
    "tests.fixtures.hub",
    "tests.fixtures.controlplane",
]
