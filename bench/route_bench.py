"""Route benchmark (`proxy` mode): how soon a spawning pod's MCP route is in configurable-http-proxy,
and what one reconcile pass over 1000 CHP routes costs.

On the real test control plane with a real CHP (node_modules) and the real operator
(`--no-webhook`, `--proxy-api-url` at that CHP): a burst of N pods that look injected (default
300) is created at once; kwok moves each to Running with an IP. A watch records when the API server
reports each pod Running with an IP; a poll of CHP's REST API (every 50 ms) records when its route
appears. Reported: p50/p99 of route minus Running (target p99 ≤ 2 s). Then more pods up to 1000
routes, and from the operator's metrics the duration and writes of passes that find nothing to do
(target ≤ 5 s, 0 writes), and the time until a restarted CHP (empty table) has all 1000 back.

What this does not measure: a request answered through CHP. kwok's pods run no process at this
scale (the Z2JH tier's node agent runs real ones, for a handful of pods); the route in CHP's table
is what makes the 401 answer possible, and CHP serves a route as soon as it holds it.
Writes bench/results/route.json and route.png, prints the JSON.

    python -m bench.route_bench [--pods 300] [--routes 1000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, watch

from bench.operator_bench import policy_namespace, start_bench_control_plane
from bench.reconcile_bench import gauge, injected_pod
from bench.results import machine, target_line, two_panels, write
from tests.harness.chp import ChpProcess
from tests.harness.operator import OperatorProcess, eventually

TARGETS = {"route_after_running_p99_s": 2.0, "pass_s_1000_routes": 5.0, "writes_per_idle_pass": 0}
INTERVAL = 10.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class RunningWatch(threading.Thread):
    """When the API server first reported each pod Running with an IP (monotonic clock)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = client.CoreV1Api(api), namespace
        self.running: dict[str, float] = {}
        self.watch = watch.Watch()
        self.stopping = False

    def run(self) -> None:
        stream = self.watch.stream(self.core.list_namespaced_pod, self.namespace, timeout_seconds=1800)
        try:
            for event in stream:
                pod = event["object"]
                user = (pod.metadata.annotations or {}).get("hub.jupyter.org/username")
                if user and pod.status.phase == "Running" and pod.status.pod_ip:
                    self.running.setdefault(user, time.monotonic())
        except Exception:  # the control plane stopping under the watch at the end
            if not self.stopping:
                raise


class RoutePoll(threading.Thread):
    """When each user's route first appeared in CHP's table (monotonic clock)."""

    def __init__(self, chp: ChpProcess) -> None:
        super().__init__(daemon=True)
        self.chp = chp
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"token {self.chp.auth_token}"}
        with httpx.Client(timeout=10) as http:
            while not self.stop.wait(0.05):
                try:
                    routes = http.get(f"{self.chp.api_url}/api/routes", headers=headers).json()
                except httpx.HTTPError:
                    continue  # CHP restarting
                now = time.monotonic()
                for path in routes:
                    parts = path.strip("/").split("/")
                    if len(parts) == 3 and parts[0] == "user" and parts[2] == "mcp":
                        self.seen.setdefault(parts[1], now)

    def ours(self) -> int:
        routes = self.chp.routes()
        return sum(1 for path in routes if path.endswith("/mcp"))


def routed_pod(user: str) -> dict[str, Any]:
    """An injected pod without resource requests: the golden pod asks ~1 GiB, so kwok's fake node
    (512 GiB) runs only ~550 of them and the rest stay Pending, never routed (the stall of the
    first 1000-route run)."""
    pod = injected_pod(user)
    for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
        container.pop("resources", None)
    return pod


def create_pods(core: Any, namespace: str, users: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda u: core.create_namespaced_pod(namespace, routed_pod(u)), users))


def idle_passes(op: OperatorProcess, count: int) -> list[dict[str, float | None]]:
    samples: list[dict[str, float | None]] = []
    seen = gauge(op.metrics(), "mcp_operator_reconcile_passes_total", outcome="ok") or 0
    while len(samples) < count:
        time.sleep(0.5)
        metrics = op.metrics()
        done = gauge(metrics, "mcp_operator_reconcile_passes_total", outcome="ok") or 0
        if done > seen:
            seen = done
            samples.append(
                {
                    m: gauge(metrics, "mcp_operator_reconcile_last_pass", measure=m)
                    for m in ("seconds", "pods", "writes")
                }
            )
    return samples


def run(pods: int, routes: int, workdir: Path) -> dict[str, Any]:
    cp = start_bench_control_plane(workdir)
    api = cp.api_client()
    (workdir / "chp").mkdir()
    chp = ChpProcess(workdir / "chp")
    chp.start()
    op: OperatorProcess | None = None
    poll = RoutePoll(chp)
    running: RunningWatch | None = None
    try:
        core, namespace = policy_namespace(cp, api, {"route": {"mode": "proxy"}})
        (workdir / "operator").mkdir()
        op = OperatorProcess(cp, namespace, workdir / "operator")
        op.env["MCP_RECONCILE_INTERVAL"] = str(INTERVAL)
        op.env["CONFIGPROXY_AUTH_TOKEN"] = chp.auth_token
        op.start(extra_args=["--no-webhook", f"--proxy-api-url={chp.api_url}"])
        running = RunningWatch(api, namespace)
        running.start()
        poll.start()

        burst = [f"s-{i:04d}" for i in range(pods)]
        started = time.monotonic()
        create_pods(core, namespace, burst)
        created_s = time.monotonic() - started
        eventually(f"{pods} routes", lambda: all(u in poll.seen for u in burst), timeout=600, every=0.5)
        lags = [poll.seen[u] - running.running[u] for u in burst if u in running.running]

        more = [f"s-{i:04d}" for i in range(pods, routes)]
        create_pods(core, namespace, more)
        eventually(f"{routes} routes", lambda: poll.ours() >= routes, timeout=900, every=1)
        passes = idle_passes(op, 3)[1:]  # the first may overlap the last wiring

        chp.restart()
        restarted = time.monotonic()
        eventually("the routes back", lambda: poll.ours() >= routes, timeout=INTERVAL * 6, every=0.2)
        healed_s = time.monotonic() - restarted
        return {
            "pods_in_burst": pods,
            "burst_created_s": round(created_s, 1),
            "route_after_running_s": {
                "p50": round(statistics.median(lags), 3),
                "p99": round(percentile(lags, 0.99), 3),
                "max": round(max(lags), 3),
                "samples": len(lags),
            },
            "routes": routes,
            "idle_passes": passes,
            "pass_s_max": round(max(p["seconds"] or 0 for p in passes), 2),
            "writes_per_idle_pass_max": max(p["writes"] or 0 for p in passes),
            "chp_restart_healed_s": round(healed_s, 1),
            "reconcile_interval_s": INTERVAL,
            "targets": TARGETS,
            "machine": machine(),
        }
    finally:
        poll.stop.set()
        if running is not None:
            running.stopping = True
            running.watch.stop()
        if op is not None:
            op.stop()
        chp.stop()
        api.close()
        cp.stop()


def plot(report: dict[str, Any]) -> Any:
    fig, left, right = two_panels()
    lag = report["route_after_running_s"]
    left.bar(["p50", "p99", "max"], [lag["p50"], lag["p99"], lag["max"]])
    left.set_ylabel("seconds")
    left.set_title(f"route in CHP after Running ({report['pods_in_burst']}-pod burst)")
    target_line(left, TARGETS["route_after_running_p99_s"], "target p99")
    seconds = [p["seconds"] for p in report["idle_passes"]]
    right.bar(range(1, len(seconds) + 1), seconds)
    right.set_xlabel("idle pass")
    right.set_ylabel("seconds")
    healed = report["chp_restart_healed_s"]
    right.set_title(f"pass over {report['routes']} routes; CHP restart healed in {healed} s")
    target_line(right, TARGETS["pass_s_1000_routes"])
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--routes", type=int, default=1000)
    args, _ = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="route-bench-") as tmp:
        report = run(args.pods, max(args.routes, args.pods), Path(tmp))
    write("route", report, plot(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
