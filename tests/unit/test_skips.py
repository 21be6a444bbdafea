"""Tests that need something missing here are skipped with a reason that names the missing thing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.controlplane import (
    CONTROL_PLANE_BINARIES,
    container_engine_problem,
    control_plane_bin_dir,
    missing_binaries,
)
from tests.harness.paths import REPO


def test_no_engine_on_path_is_named() -> None:
    reason = container_engine_problem(which=lambda name: None, run=lambda argv: 0)
    assert reason == "no container engine: neither docker nor podman is on PATH"


def test_engine_installed_but_not_running_is_named() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> int:
        calls.append(argv)
        return 1  # what `docker info` returns when the daemon is down

    reason = container_engine_problem(
        which=lambda name: f"/usr/bin/{name}" if name == "docker" else None, run=run
    )
    assert reason == "no container engine: docker installed but not running (`docker info` fails)"
    assert calls == [["/usr/bin/docker", "info"]]


def test_running_engine_without_kind_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tests.fixtures.controlplane as cp

    monkeypatch.setattr(cp, "CACHE", tmp_path)  # an empty cache: no kind there either
    reason = container_engine_problem(
        which=lambda name: "/usr/bin/podman" if name == "podman" else None, run=lambda a: 0
    )
    assert reason == "kind binary not found on PATH or in the control-plane cache"


def test_missing_control_plane_binaries_are_listed(tmp_path: Path) -> None:
    assert missing_binaries(tmp_path) == list(CONTROL_PLANE_BINARIES)


def test_kind_tier_is_skipped_with_the_reason_when_no_engine_runs() -> None:
    problem = container_engine_problem()
    if problem is None:
        pytest.skip("a container engine and kind are available here, so the kind tier really runs")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/kind"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert problem in result.stdout  # the skip line says exactly what is missing


def test_fixture_looks_where_build_sh_builds() -> None:
    # One source of truth (versions.env): the fixture and build.sh must agree on the cache dir,
    # or every control-plane test would skip after a successful `make controlplane`.
    printed = subprocess.run(
        ["bash", str(REPO / "tests" / "controlplane" / "build.sh"), "--print-bin-dir"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert Path(printed) == control_plane_bin_dir()
