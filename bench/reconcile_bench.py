"""Operator benchmark: one level-triggered pass over N wired pods (default 2000).

On the real test control plane: N KubeSpawner-shaped pods that look injected (the webhook's
annotation and label) are created directly, without the webhook (admitting 2000 pods is the other
benchmark's subject); the real operator (`--no-webhook`) wires them all from its start-up events,
then runs its periodic pass. Measured from the operator's own metrics: the duration of a pass that
finds nothing drifted, the API writes it made (target 0), and the operator's RSS (/proc).
Writes bench/results/reconcile.json and reconcile.png, prints the JSON.

    python -m bench.reconcile_bench [--pods 2000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.operator_bench import count_children, policy_namespace, start_bench_control_plane
from bench.results import machine, target_line, two_panels, write
from tests.harness.operator import OperatorProcess, eventually, user_pod

TARGETS = {"pass_s_2000_pods": 10.0, "operator_rss_mib": 200.0, "writes_per_idle_pass": 0}
INTERVAL = 15.0  # seconds between passes: long enough that a pass never overlaps the next


def gauge(metrics: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def injected_pod(user: str) -> dict[str, Any]:
    pod = user_pod(user)
    meta = pod["metadata"]
    meta["annotations"]["mcp.jupyterhub.org/injected"] = "class/1"
    meta["labels"]["mcp.jupyterhub.org/pod"] = meta["name"]
    return pod


def run(pods: int, passes: int, workdir: Path) -> dict[str, Any]:
    cp = start_bench_control_plane(workdir)
    api = cp.api_client()
    op: OperatorProcess | None = None
    try:
        core, namespace = policy_namespace(cp, api, {"route": {"mode": "ingress"}})  # every kind of child
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            list(
                pool.map(
                    lambda i: core.create_namespaced_pod(namespace, injected_pod(f"s-{i:04d}")), range(pods)
                )
            )
        created_s = time.monotonic() - started
        (workdir / "operator").mkdir()
        op = OperatorProcess(cp, namespace, workdir / "operator")
        op.env["MCP_RECONCILE_INTERVAL"] = str(INTERVAL)
        op.start(extra_args=["--no-webhook"])
        assert op.proc is not None
        started = time.monotonic()
        eventually(
            f"{pods} pods wired", lambda: min(count_children(api, namespace)) >= pods, timeout=1200, every=1
        )
        wired_s = time.monotonic() - started
        samples = []
        seen = gauge(op.metrics(), "mcp_operator_reconcile_passes_total", outcome="ok") or 0
        rss_peak = 0.0
        while len(samples) < passes:
            time.sleep(1)
            rss_peak = max(rss_peak, rss_mib(op.proc.pid))
            metrics = op.metrics()
            done = gauge(metrics, "mcp_operator_reconcile_passes_total", outcome="ok") or 0
            if done > seen:
                seen = done
                samples.append(
                    {
                        measure: gauge(metrics, "mcp_operator_reconcile_last_pass", measure=measure)
                        for measure in ("seconds", "pods", "writes")
                    }
                )
        # The first pass may still see the start-up wiring's status writes settle; report all.
        idle = samples[1:] or samples
        return {
            "pods": pods,
            "pods_created_s": round(created_s, 1),
            "wired_from_startup_s": round(wired_s, 1),
            "passes": samples,
            "pass_s_max": round(max(s["seconds"] or 0 for s in idle), 2),
            "writes_per_idle_pass_max": max(s["writes"] or 0 for s in idle),
            "operator_rss_mib_peak": round(rss_peak, 1),
            "targets": TARGETS,
            "machine": machine(),
        }
    finally:
        if op is not None:
            op.stop()
        api.close()
        cp.stop()


def plot(report: dict[str, Any]) -> Any:
    fig, left, right = two_panels()
    seconds = [s["seconds"] for s in report["passes"]]
    left.bar(range(1, len(seconds) + 1), seconds)
    left.set_xlabel("pass")
    left.set_ylabel("seconds")
    left.set_title(f"one pass over {report['pods']} wired pods")
    target_line(left, TARGETS["pass_s_2000_pods"])
    right.bar(["operator RSS peak"], [report["operator_rss_mib_peak"]])
    right.set_ylabel("MiB")
    right.set_title(f"writes per idle pass: {report['writes_per_idle_pass_max']:.0f}")
    target_line(right, TARGETS["operator_rss_mib"])
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=3)
    args, _ = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp:
        report = run(args.pods, args.passes, Path(tmp))
    write("reconcile", report, plot(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
