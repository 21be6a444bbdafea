"""The chart tests' fixtures: the real `helm` binary and rendered manifests (helpers: harness/chart.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.fixtures.controlplane import control_plane_bin_dir
from tests.harness.chart import CHART, find_helm, run_helm


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    helm = find_helm()
    if helm is None:
        pytest.skip(f"no helm in {control_plane_bin_dir()} (run `make controlplane`), PATH or $HELM")
    return helm


@pytest.fixture(scope="session")
def render(helm_bin: Path) -> Callable[..., list[dict]]:
    """render(*helm template args) -> list of rendered objects (release "hub-mcp" in "jhub")."""

    def _render(*args: str, hooks: bool = False) -> list[dict]:
        """The release's objects; with ``hooks``, only its Helm hooks (the uninstall Job and its RBAC)."""
        args = ("template", "jupyterhub-mcp", str(CHART), "--namespace", "jhub", *args)
        out = run_helm(helm_bin, *args).stdout
        docs = [doc for doc in yaml.safe_load_all(out) if doc]
        return [d for d in docs if ("helm.sh/hook" in (d["metadata"].get("annotations") or {})) == hooks]

    return _render
