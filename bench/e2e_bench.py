"""End-to-end benchmark: one sidecar behind configurable-http-proxy, 8 concurrent MCP sessions.

Starts the real ``jupyterhub-mcp demo`` (one user), opens 8 sessions with the official MCP SDK
client through the proxy and keeps each busy for a fixed time per workload:

- ``read_cell``: read one cell of a 20-cell notebook (sidecar + collaboration room, no kernel);
- ``insert_cell``: each session appends to its own notebook (Y-doc edits, saved by the room);
- ``execute_code``: a trivial expression in one shared kernel (the kernel serialises them).

Reports calls/second sustained and p50/p99 latency per workload, plus the same read workload
straight at the sidecar (no proxy) to show what the proxy hop costs. Writes bench/results/e2e.json
and e2e.png and prints the JSON.

    python -m bench.e2e_bench [--quick] [--duration SECONDS] [--sessions N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp.client import Client

from tests.harness.demo import running_demo
from tests.harness.mcp import call, mcp_client

RESULTS = Path(__file__).parent / "results"


def summary(latencies: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        if not ordered:
            return 0.0
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000, 2)

    return {
        "calls": len(ordered),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "calls_per_s": round(len(ordered) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else 0.0,
        "p99_ms": pct(0.99),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else 0.0,
    }


async def sustain(
    clients: list[Client], work: Callable[[int, Client], Awaitable[Any]], duration: float
) -> tuple[dict[str, Any], list[float]]:
    """Every session calls ``work`` back to back until ``duration`` is over."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def session(index: int, client: Client) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await work(index, client)
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(session(i, c) for i, c in enumerate(clients)))
    return summary(latencies, errors, time.perf_counter() - started), latencies


async def run(url: str, direct_url: str, token: str, sessions: int, duration: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    samples: dict[str, list[float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(mcp_client(url, token)) for _ in range(sessions)]
        # The same sidecar without the proxy in between, to show what the hop costs.
        direct = [await stack.enter_async_context(mcp_client(direct_url, token)) for _ in range(sessions)]
        setup = clients[0]
        await call(setup, "create_notebook", path="bench-read.ipynb")
        for i in range(20):
            await call(setup, "insert_cell", path="bench-read.ipynb", source=f"value_{i} = {i} * 2")
        await call(setup, "create_notebook", path="bench-exec.ipynb")
        for i in range(sessions):
            await call(setup, "create_notebook", path=f"bench-insert-{i}.ipynb")
        await call(setup, "execute_code", path="bench-exec.ipynb", code="1")  # kernel up before timing

        def read(i: int, c: Client) -> Awaitable[Any]:
            return call(c, "read_cell", path="bench-read.ipynb", cell=i % 20)

        # read_cell and read_cell_direct run back to back, so a shared machine's load hits both alike.
        workloads: list[tuple[str, list[Client], Callable[[int, Client], Awaitable[Any]]]] = [
            ("read_cell", clients, read),
            ("read_cell_direct", direct, read),
            (
                "insert_cell",
                clients,
                lambda i, c: call(c, "insert_cell", path=f"bench-insert-{i}.ipynb", source="x"),
            ),
            (
                "execute_code",
                clients,
                lambda i, c: call(c, "execute_code", path="bench-exec.ipynb", code="1 + 1"),
            ),
        ]
        for name, group, work in workloads:
            await sustain(group, work, min(2.0, duration / 4))  # warm-up, not recorded
            results[name], samples[name] = await sustain(group, work, duration)
            print(f"{name}: {results[name]}", file=sys.stderr)
    return {"workloads": results, "samples": samples}


def plot(report: dict[str, Any], samples: dict[str, list[float]], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["workloads"])
    fig, (rate, lat) = plt.subplots(1, 2, figsize=(12, 4.5))
    values = [report["workloads"][n]["calls_per_s"] for n in names]
    colors = dict(zip(names, ["#4c72b0", "#55a868", "#c44e52", "#8c8c8c"], strict=False))
    bars = rate.bar(names, values, color=[colors[n] for n in names])
    rate.bar_label(bars, fmt="%.0f")
    rate.set_ylabel("calls / second (all sessions)")
    rate.set_title(f"{report['sessions']} concurrent MCP sessions, one sidecar, through the proxy")
    rate.tick_params(axis="x", rotation=15)
    for name in names:
        ordered = sorted(s * 1000 for s in samples[name])
        if ordered:
            lat.plot(ordered, [i / len(ordered) for i in range(len(ordered))], label=name, color=colors[name])
    lat.set_xscale("log")
    lat.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    lat.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    lat.set_xlabel("latency per call (ms, log)")
    lat.set_ylabel("fraction of calls")
    lat.axhline(0.5, color="grey", lw=0.5)
    lat.axhline(0.99, color="grey", lw=0.5)
    lat.legend()
    lat.set_title("latency CDF (p50 and p99 lines)")
    machine = report["machine"]
    fig.suptitle(f"jupyterhub-mcp end to end ({machine['cpus']} CPUs, load {machine['load']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per workload instead of 20 s")
    parser.add_argument("--duration", type=float, help="seconds per workload")
    parser.add_argument("--sessions", type=int, default=8)
    args, _ = parser.parse_known_args(argv)
    duration = args.duration or (5.0 if args.quick else 20.0)

    with (
        tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp,
        running_demo(Path(tmp) / "demo", "alice") as demo,
    ):
        user = demo.users["alice"]
        direct = demo.routes()["/user/alice/mcp"]["target"] + "/user/alice/mcp"
        load_before = os.getloadavg()[0]
        measured = asyncio.run(run(user.url, direct, user.token, args.sessions, duration))
        load_after = os.getloadavg()[0]
    report = {
        "benchmark": "e2e",
        "sessions": args.sessions,
        "seconds_per_workload": duration,
        "path": "MCP SDK client -> configurable-http-proxy -> sidecar -> jupyter_server (+ collaboration)",
        "workloads": measured["workloads"],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # 1-minute load average before and after: the clients run on the same machine.
            "load": round(load_before, 2),
            "load_after": round(load_after, 2),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "e2e.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, measured["samples"], RESULTS / "e2e.png")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
