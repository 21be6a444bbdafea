"""Operator benchmark: a class of students spawning at once.

On the real test control plane (etcd + kube-apiserver + controller-manager + scheduler + kwok),
with the real operator process and its webhook registered through the test CA: create N
KubeSpawner-shaped pods at once (default 300) and measure the time until every one is injected
and has its Service, Ingress and NetworkPolicy; then the webhook's own handler latency (from its
Prometheus histogram, as the API server called it) and the HTTPS round trip of direct reviews.
Writes bench/results/operator.json and operator.png, prints the JSON.

    python -m bench.operator_bench [--pods 300]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from mcp_operator.constants import GROUP, PLURAL, VERSION

from bench.results import machine, two_panels, write
from tests.fixtures.controlplane import (
    ControlPlane,
    control_plane_bin_dir,
    missing_binaries,
    start_control_plane,
)
from tests.harness.operator import OperatorProcess, eventually, install_crd, policy_object, user_pod

TARGETS = {"wired_s_per_500_pods": 60.0, "webhook_p99_ms": 10.0}
MANAGED = "app.kubernetes.io/managed-by=jupyterhub-mcp"


def histogram_quantile(metrics: str, name: str, q: float) -> float | None:
    """Upper bound of the bucket holding quantile q (what Prometheus' histogram_quantile bounds)."""
    buckets = []
    for line in metrics.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(le for le, count in sorted(buckets) if count >= q * total)


def count_children(api: client.ApiClient, namespace: str) -> tuple[int, int, int]:
    """Raw JSON lists: the client's model deserialisation of 900 objects would load the machine
    the operator is being measured on."""
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    counts = []
    for call in (
        core.list_namespaced_service,
        net.list_namespaced_ingress,
        net.list_namespaced_network_policy,
    ):
        response = call(namespace, label_selector=MANAGED, _preload_content=False)
        counts.append(len(json.loads(response.data)["items"]))
    return counts[0], counts[1], counts[2]


def start_bench_control_plane(workdir: Path) -> ControlPlane:
    bin_dir = control_plane_bin_dir()
    if missing := missing_binaries(bin_dir):
        raise SystemExit(f"control plane binaries missing in {bin_dir}: {missing}; run `make controlplane`")
    return start_control_plane(bin_dir, workdir / "controlplane")


def policy_namespace(cp: ControlPlane, api: client.ApiClient, spec: dict[str, Any]) -> tuple[Any, str]:
    """The CRD, a fresh namespace and one MCPPolicy ``class`` in it: (CoreV1Api, namespace)."""
    install_crd(cp)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    eventually("the default service account", lambda: core.list_namespaced_service_account(namespace).items)
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, policy_object("class", spec)
    )
    return core, namespace


def run(pods: int, workdir: Path) -> dict[str, Any]:
    cp = start_bench_control_plane(workdir)
    api = cp.api_client()
    op: OperatorProcess | None = None
    try:
        core, namespace = policy_namespace(
            cp, api, {"route": {"mode": "ingress", "ingressClassName": "nginx", "host": "hub.example.org"}}
        )
        (workdir / "operator").mkdir()
        op = OperatorProcess(cp, namespace, workdir / "operator")
        op.start()
        op.register_webhook(api, "probe-user")
        baseline = op.metrics()

        users = [f"student-{i:03d}" for i in range(pods)]
        timeline: list[tuple[float, int, int, int]] = []  # (s, Services, Ingresses, NetworkPolicies)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            created = list(pool.map(lambda u: core.create_namespaced_pod(namespace, user_pod(u)), users))
        all_created = time.monotonic() - started
        injected = sum("mcp.jupyterhub.org/injected" in (p.metadata.annotations or {}) for p in created)

        def all_wired() -> bool:
            counts = count_children(api, namespace)
            timeline.append((time.monotonic() - started, *counts))
            return min(counts) >= pods

        eventually(f"{pods} pods wired", all_wired, timeout=600, every=0.5)
        wired_s = time.monotonic() - started
        after = op.metrics()

        # Direct reviews over HTTPS: the handler plus TLS and HTTP, without the API server.
        ca = workdir / "ca.crt"
        ca.write_bytes(cp.ca_pem)
        review_pod = user_pod("latency-probe")
        review_pod["metadata"]["namespace"] = namespace
        samples = []
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=10) as http:
            for _ in range(500):
                body = {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {"uid": str(uuid.uuid4()), "namespace": namespace, "object": review_pod},
                }
                t0 = time.perf_counter()
                http.post(f"https://127.0.0.1:{op.webhook_port}/mutate-pod", json=body).raise_for_status()
                samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()
        name = "mcp_operator_webhook_duration_seconds"
        p99_during_spawn = histogram_quantile(after, name, 0.99)
        return {
            "pods": pods,
            "created_s": round(all_created, 2),
            "injected_at_admission": injected,
            "all_wired_s": round(wired_s, 2),
            "wired_s_per_500_pods_extrapolated": round(wired_s * 500 / pods, 1),
            "webhook_handler_p99_ms_upper_bound": None
            if p99_during_spawn is None
            else p99_during_spawn * 1000,
            "webhook_handler_p50_ms_upper_bound": (histogram_quantile(after, name, 0.5) or 0) * 1000,
            "webhook_reviews_during_spawn": _count(after, name) - _count(baseline, name),
            "direct_review_https_ms": {
                "p50": round(statistics.median(samples), 2),
                "p99": round(samples[int(len(samples) * 0.99) - 1], 2),
                "max": round(samples[-1], 2),
            },
            "timeline": [(round(t, 2), *counts) for t, *counts in timeline],
            "direct_samples_ms": [round(s, 3) for s in samples],
            "targets": TARGETS,
            "machine": machine(),
        }
    finally:
        if op is not None:
            op.stop()
        api.close()
        cp.stop()


def _count(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(f"{name}_count "):
            return float(line.split()[-1])
    return 0.0


def plot(report: dict[str, Any]) -> Any:
    fig, left, right = two_panels(width=11)
    times = [row[0] for row in report["timeline"]]
    for column, kind in enumerate(("Service", "Ingress", "NetworkPolicy"), start=1):
        left.plot(times, [row[column] for row in report["timeline"]], marker=".", label=kind)
    left.axvline(report["created_s"], color="black", linestyle="--", label="all pods created")
    left.legend()
    left.axhline(report["pods"], color="grey", linestyle=":")
    left.set_xlabel("seconds since the first pod was created")
    left.set_ylabel("children applied")
    left.set_title(f"{report['pods']} pods at once: all wired in {report['all_wired_s']} s")
    right.hist(report["direct_samples_ms"], bins=40)
    right.axvline(TARGETS["webhook_p99_ms"], color="red", linestyle="--", label="p99 target")
    right.set_xlabel("AdmissionReview round trip over HTTPS (ms)")
    right.set_title(f"webhook: p99 {report['direct_review_https_ms']['p99']} ms")
    right.legend()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=300)
    args, _ = parser.parse_known_args(argv)  # bench.run passes the same extra args to every benchmark
    with tempfile.TemporaryDirectory(prefix="operator-bench-") as tmp:
        report = run(args.pods, Path(tmp))
    summary = {k: v for k, v in report.items() if k not in ("timeline", "direct_samples_ms")}
    write("operator", report, plot(report), summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
