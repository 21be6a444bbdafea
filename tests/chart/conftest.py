"""Helpers for the chart tests: the real `helm` binary and rendered manifests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.fixtures.controlplane import control_plane_bin_dir
from tests.fixtures.tools import REPO

CHART = REPO / "charts" / "jupyterhub-mcp"
FULL_VALUES = Path(__file__).parent / "values-full.yaml"


def find_helm() -> Path | None:
    """helm from $HELM, the control-plane cache (`make controlplane` unpacks it there) or PATH."""
    if os.environ.get("HELM"):
        return Path(os.environ["HELM"])
    cached = control_plane_bin_dir() / "helm"
    if os.access(cached, os.X_OK):
        return cached
    on_path = shutil.which("helm")
    return Path(on_path) if on_path else None


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    helm = find_helm()
    if helm is None:
        pytest.skip(f"no helm in {control_plane_bin_dir()} (run `make controlplane`), PATH or $HELM")
    return helm


def run_helm(
    helm: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def render(helm_bin: Path) -> Callable[..., list[dict]]:
    """render(*helm template args) -> list of rendered objects (release "hub-mcp" in "jhub")."""

    def _render(*args: str) -> list[dict]:
        args = ("template", "jupyterhub-mcp", str(CHART), "--namespace", "jhub", *args)
        out = run_helm(helm_bin, *args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    return _render


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    (found,) = by_kind(objects, kind)
    return found
