"""The Gateway API's standard-channel CRDs (pinned), for the tests of route mode gateway.

Taken from the Go module `sigs.k8s.io/gateway-api` (its `config/crd/standard/*.yaml`), fetched with
`go mod download` through the Go module proxy (checksum-verified against sum.golang.org) into the Go
module cache, like tests/controlplane/build.sh builds the control plane from Go modules. Nothing is
vendored into the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

GATEWAY_API_VERSION = "v1.6.3"
MODULE = "sigs.k8s.io/gateway-api"
# What route mode gateway needs (HTTPRoute) and what it refers to (Gateway, GatewayClass); and
# what Traefik's Gateway provider watches besides (it routes nothing until all its informers sync).
CRDS = ("gatewayclasses", "gateways", "httproutes", "referencegrants", "grpcroutes", "backendtlspolicies")


def crd_files(version: str = GATEWAY_API_VERSION) -> list[Path]:
    """The standard-channel CRD files of `version`, downloaded once into the Go module cache."""
    with tempfile.TemporaryDirectory() as scratch:  # outside any module: `go mod download m@v` works
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
            cwd=scratch,
            env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    if result.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{version} failed:\n{result.stdout}\n{result.stderr}")
    directory = Path(json.loads(result.stdout)["Dir"]) / "config" / "crd" / "standard"
    files = [directory / f"gateway.networking.k8s.io_{name}.yaml" for name in CRDS]
    missing = [f for f in files if not f.exists()]
    if missing:
        raise RuntimeError(f"{MODULE}@{version} has no {', '.join(map(str, missing))}")
    return files


def install_gateway_api(controlplane: Any) -> None:
    """Server-side apply the CRDs and wait until the API server serves them."""
    for path in crd_files():
        controlplane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    for name in CRDS:
        controlplane.wait_crd_established(f"{name}.gateway.networking.k8s.io", timeout=120)
