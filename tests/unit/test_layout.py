"""The test tree's import rule: tests and benchmarks use ``tests.harness`` and ``tests.fixtures``,
never another test module, a tier's conftest, or a relative import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.harness.paths import REPO

SHARED = ("tests.harness", "tests.fixtures")


def python_files() -> Iterator[Path]:
    for top in ("tests", "bench"):
        yield from sorted((REPO / top).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in ``path``, at any depth; ``from a import b`` gives ``a.b``
    too when ``b`` is a module, and a relative import gives ``.`` plus what it names."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield node.lineno, "." * node.level + (node.module or "")
                continue
            module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                if (REPO / (module + "." + alias.name).replace(".", "/")).with_suffix(".py").exists():
                    yield node.lineno, f"{module}.{alias.name}"


def allowed(module: str) -> bool:
    if module.startswith("."):
        return False
    if module != "tests" and not module.startswith("tests."):
        return True  # the products, bench, libraries
    return module.startswith(tuple(f"{s}." for s in SHARED)) or module in SHARED


def is_test_module(module: str) -> bool:
    return module.rsplit(".", 1)[-1].startswith("test_")


def test_tests_and_bench_import_only_the_harness_and_the_fixtures() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in python_files()
        for line, module in imports(path)
        if not allowed(module) or is_test_module(module)
    ]
    assert not wrong, "import from tests.harness or tests.fixtures instead:\n" + "\n".join(wrong)


def test_the_rule_sees_what_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from tests.sidecar.test_notebook_sessions import human\n"
        "from tests.chart import conftest\n"
        "from . import helpers\n"
        "def later():\n    import tests.e2e.test_agents\n"
        "from tests.harness.mcp import call\n"
    )
    found = {m for _, m in imports(sample) if not allowed(m) or is_test_module(m)}
    assert found == {
        "tests.sidecar.test_notebook_sessions",
        "tests.chart",
        "tests.chart.conftest",
        ".",
        "tests.e2e.test_agents",
    }
