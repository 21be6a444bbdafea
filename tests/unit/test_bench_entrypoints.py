"""`make bench` runs every benchmark through bench.run, which calls each module's main(argv) with the
extra arguments after `--`. Checked here without running a benchmark (they take minutes)."""

from __future__ import annotations

import importlib
import inspect

import pytest

from bench import run


@pytest.mark.parametrize("name", run.available())
def test_every_benchmark_main_takes_the_runner_arguments(name: str) -> None:
    main = importlib.import_module(f"bench.{name}_bench").main
    parameters = list(inspect.signature(main).parameters.values())
    assert len(parameters) == 1 and parameters[0].default is None, f"bench.{name}_bench.main(argv=None)"


def test_the_runner_knows_the_benchmarks_and_refuses_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(run.available()) >= {"sidecar", "operator", "e2e"}
    assert run.main(["nope"]) == 2
    assert "unknown benchmark(s): nope" in capsys.readouterr().err
