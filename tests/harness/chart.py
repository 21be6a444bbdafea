"""The chart tests' helpers: the real `helm` binary, rendered manifests, and what the operator is
allowed to do, written once (the render test compares the chart's RBAC to ``NAMESPACED`` exactly: a
Role in the release namespace, nothing cluster-wide; the install test proves each entry, and nothing
more, against a real API server)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.controlplane import control_plane_bin_dir
from tests.harness.paths import REPO

CHART = REPO / "charts" / "jupyterhub-mcp"
FULL_VALUES = REPO / "tests" / "chart" / "values-full.yaml"


def find_helm() -> Path | None:
    """helm from $HELM, the control-plane cache (`make controlplane` unpacks it there) or PATH."""
    if os.environ.get("HELM"):
        return Path(os.environ["HELM"])
    cached = control_plane_bin_dir() / "helm"
    if os.access(cached, os.X_OK):
        return cached
    on_path = shutil.which("helm")
    return Path(on_path) if on_path else None


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


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    (found,) = by_kind(objects, kind)
    return found


# (apiGroup, resource, verbs) in the release namespace: what the operator's code and kopf call.
NAMESPACED: list[tuple[str, str, tuple[str, ...]]] = [
    ("", "pods", ("get", "list", "watch")),
    ("", "services", ("create", "patch", "list", "delete")),
    ("networking.k8s.io", "ingresses", ("create", "patch", "list", "delete")),
    ("networking.k8s.io", "networkpolicies", ("create", "patch", "list", "delete")),
    ("gateway.networking.k8s.io", "httproutes", ("create", "patch", "list", "delete")),
    ("", "secrets", ("create", "get", "list", "watch", "patch", "update", "delete")),
    ("", "events", ("create",)),
    ("mcp.jupyterhub.org", "mcppolicies", ("get", "list", "watch")),
    ("mcp.jupyterhub.org", "mcppolicies/status", ("patch",)),
]


def flatten(entries: list[tuple[str, str, tuple[str, ...]]]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for group, resource, verbs in entries for verb in verbs}


def flatten_rules(rules: list[dict]) -> set[tuple[str, str, str]]:
    """A Role's rules as (apiGroup, resource, verb) triples."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def service_account_kubeconfig(controlplane: Any, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that *is* the ServiceAccount: a token from the TokenRequest API, the same kind
    of credential the operator pod gets, so the API server authorizes every call the operator
    makes exactly as it would in the cluster."""
    token = controlplane.kubectl("create", "token", account, "-n", namespace, "--duration=2h").strip()
    cluster = {
        "server": controlplane.server,
        "certificate-authority-data": base64.b64encode(controlplane.ca_pem).decode(),
    }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {"name": account, "context": {"cluster": "test", "user": account, "namespace": namespace}}
        ],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def install_chart_rbac(controlplane: Any, namespace: str, release: str = "jupyterhub-mcp") -> str:
    """Only the chart's ServiceAccount, Role and RoleBinding (templates/rbac.yaml as `helm template`
    renders them), applied into ``namespace``: for an operator that runs on this machine but must
    have exactly the chart's permissions. Returns the ServiceAccount's name."""
    rendered = controlplane.helm(
        "template", release, str(CHART), "-n", namespace, "--show-only", "templates/rbac.yaml"
    )
    controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=rendered)
    (account,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceAccount"]
    return str(account["metadata"]["name"])
