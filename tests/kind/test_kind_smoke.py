"""Optional tier 5: a kind cluster (pytest-kind). Skipped, with the reason, without a container engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.controlplane import control_plane_bin_dir

pytestmark = pytest.mark.kind


def test_kind_cluster_comes_up(kind_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_kind import KindCluster

    monkeypatch.chdir(tmp_path)  # pytest-kind keeps its state in ./.pytest-kind
    cluster = KindCluster(
        "jupyterhub-mcp-smoke", kind_path=kind_binary, kubectl_path=control_plane_bin_dir() / "kubectl"
    )
    cluster.create()
    try:
        nodes = cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[*].status.conditions[-1].type}")
        assert "Ready" in nodes
    finally:
        cluster.delete()
