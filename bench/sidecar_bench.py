"""Sidecar benchmark: this sidecar vs the reference jupyter-mcp-server vs a raw jupyter_client floor.

All three against ONE real Jupyter server (with jupyter-collaboration) in one run: p50/p90 of a
trivial execute, an insert, a read of a 500-cell notebook and a 1 MB print, plus idle RSS and
time-to-ready of each MCP server. Writes bench/results/sidecar.json and sidecar.png, prints the JSON.

    python -m bench.sidecar_bench [--quick]

The reference server is installed from PyPI into its own venv (its pins clash with ours) under
~/.cache/jupyterhub-mcp/bench-venv; if that cannot be done its column says why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.harness.jupyter import JupyterProcess, jupyter_server, sidecar_command, sidecar_process_env
from tests.harness.mcp import mcp_client, text
from tests.harness.notebooks import write_notebook
from tests.harness.paths import CACHE, free_port
from tests.harness.processes import stop

RESULTS = Path(__file__).parent / "results"
REFERENCE_VENV = CACHE / "bench-venv"
REFERENCE_PACKAGE = "jupyter-mcp-server"
TARGETS = {"execute_p50_ms": 15, "insert_p50_ms": 8, "read500_p50_ms": 10, "idle_rss_mib": 60, "ready_s": 1.0}
MILLION = "print('x' * 10**6)"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(p90 * 1000, 2),
        "n": len(ordered),
    }


async def timed(fn: Callable[[], Awaitable[Any]], n: float) -> tuple[dict[str, float], Any]:
    samples: list[float] = []
    last: Any = None
    for _ in range(max(2, int(n))):
        started = time.perf_counter()
        last = await fn()
        samples.append(time.perf_counter() - started)
    return percentiles(samples), last


def bench_cells(cells: int) -> list[str]:
    return [f"# cell {i}\nvalue_{i} = {i} * 2\nprint(value_{i})" for i in range(cells)]


def wait_answering(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> float:
    """Seconds from now until ``url`` answers any HTTP status (the server accepts MCP requests)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            httpx.post(url, json={}, timeout=1)
            return time.monotonic() - started
        except httpx.HTTPError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def rss_mib(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def ensure_reference() -> Path | str:
    """The reference server's executable, installed on first use; or why it is not available."""
    exe = REFERENCE_VENV / "bin" / "jupyter-mcp-server"
    if exe.exists():
        return exe
    try:
        subprocess.run([sys.executable, "-m", "venv", str(REFERENCE_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(REFERENCE_VENV / "bin" / "pip"), "install", "-q", REFERENCE_PACKAGE], check=True, timeout=900
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return f"could not install {REFERENCE_PACKAGE}: {exc}"
    return exe if exe.exists() else f"{REFERENCE_PACKAGE} installed no jupyter-mcp-server executable"


async def bench_mcp_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    url: str,
    token: str,
    log: Path,
    workload: Callable[[Any, float], Awaitable[dict[str, Any]]],
    million: Callable[[Any], Awaitable[Any]],
    scale: float,
) -> dict[str, Any]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        ready = wait_answering(url, process)
        async with mcp_client(url, token) as client:
            await client.list_tools()
            idle = rss_mib(process.pid)
            result = await workload(client, scale)
        result["ops"]["print_1mb"] = await print_1mb(url, token, million, scale)
        result.update(ready_s=round(ready, 3), idle_rss_mib=idle, rss_after_mib=rss_mib(process.pid))
        return result
    except Exception as exc:  # a broken competitor must not lose the other columns
        return {"error": f"{type(exc).__name__}: {exc}", "log_tail": log.read_text(errors="replace")[-1500:]}
    finally:
        stop(process)


async def ours(client: Any, scale: float) -> dict[str, Any]:
    nb, big = "ours.ipynb", "big_ours.ipynb"

    async def call(tool: str, **arguments: Any) -> Any:
        result = await client.call_tool(tool, arguments)
        if result.is_error:
            raise RuntimeError(f"{tool}: {text(result)}")
        return result

    await call("execute_code", path=nb, code="1+1")  # starts the kernel: not measured
    await call("read_notebook", path=big, limit=1)  # opens the room: not measured
    execute, _ = await timed(lambda: call("execute_code", path=nb, code="1+1"), 40 * scale)
    insert, _ = await timed(lambda: call("insert_cell", path=nb, source="x = 1"), 40 * scale)
    read, last = await timed(lambda: call("read_notebook", path=big, limit=500, detail="full"), 20 * scale)
    assert "value_499" in text(last)

    async def read_after_edit() -> float:
        # An edit between reads: this read pays the whole Y-to-Python conversion again.
        await call("overwrite_cell", path=big, cell=0, source=f"# changed {time.perf_counter()}")
        started = time.perf_counter()
        await call("read_notebook", path=big, limit=500, detail="full")
        return time.perf_counter() - started

    cold = [await read_after_edit() for _ in range(max(2, int(10 * scale)))]
    return {
        "ops": {
            "execute": execute,
            "insert": insert,
            "read500": read,
            "read500_after_edit": percentiles(cold),
        }
    }


def ours_million(client: Any) -> Awaitable[Any]:
    return client.call_tool("execute_code", {"path": "ours.ipynb", "code": MILLION})


def reference_million(client: Any) -> Awaitable[Any]:
    return client.call_tool("execute_code", {"code": MILLION}, read_timeout_seconds=300)


async def reference(client: Any, scale: float) -> dict[str, Any]:
    async def call(tool: str, **arguments: Any) -> Any:
        result = await client.call_tool(tool, arguments, read_timeout_seconds=300)
        if result.is_error:
            raise RuntimeError(f"{tool}: {text(result)[:500]}")
        return result

    await call("use_notebook", notebook_name="big", notebook_path="big_ref.ipynb")
    await call("use_notebook", notebook_name="bench", notebook_path="ref.ipynb")
    await call("execute_code", code="1+1")
    execute, _ = await timed(lambda: call("execute_code", code="1+1"), 20 * scale)
    insert, _ = await timed(
        lambda: call("insert_cell", cell_index=-1, cell_type="code", cell_source="x = 1"), 20 * scale
    )
    read, last = await timed(
        lambda: call(
            "read_notebook", notebook_name="big", response_format="detailed", start_index=0, limit=500
        ),
        10 * scale,
    )
    return {
        "ops": {"execute": execute, "insert": insert, "read500": read},
        "read500_has_last_cell": "value_499" in text(last),
    }


async def print_1mb(
    url: str, token: str, million: Callable[[Any], Awaitable[Any]], scale: float
) -> dict[str, Any]:
    """A 1 MB print on a connection of its own: how long, how big the answer, and whether the
    client survived it at all (a failure is the measurement, and must not cost the other numbers)."""
    try:
        async with mcp_client(url, token) as client:
            stats, result = await timed(lambda: million(client), 3 * scale)
    except Exception as exc:
        return {"failed": f"{type(exc).__name__}: {_leaf(exc)}"[:400]}
    return {**stats, "answer_chars": len(text(result)), "is_error": bool(result.is_error)}


def _leaf(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


async def floor(jupyter: JupyterProcess, scale: float) -> dict[str, Any]:
    """A kernel driven directly by jupyter_client (no HTTP, no MCP): the least any server can cost."""
    from jupyter_client.manager import start_new_async_kernel

    km, kc = await start_new_async_kernel(kernel_name="python3")
    try:
        await kc.execute_interactive("1+1", timeout=60, output_hook=lambda msg: None)
        execute, _ = await timed(
            lambda: kc.execute_interactive("1+1", timeout=60, output_hook=lambda msg: None), 40 * scale
        )
        million, _ = await timed(
            lambda: kc.execute_interactive(MILLION, timeout=60, output_hook=lambda msg: None), 3 * scale
        )
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    async with httpx.AsyncClient(base_url=jupyter.url, headers=jupyter.headers) as http:
        read, _ = await timed(lambda: http.get("api/contents/big_floor.ipynb"), 20 * scale)
    return {
        "ops": {"execute": execute, "print_1mb": million, "read500": read},
        "note": "execute/print_1mb: jupyter_client on a local kernel; read500: Contents API GET",
    }


async def run(scale: float) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    with jupyter_server(base, collaborative=True, prefix="/") as jupyter:
        for name, cells in (
            ("ours.ipynb", 0),
            ("ref.ipynb", 0),
            ("big_ours.ipynb", 500),
            ("big_ref.ipynb", 500),
            ("big_floor.ipynb", 500),
        ):
            write_notebook(jupyter, name, bench_cells(cells))
        results: dict[str, Any] = {}

        token = secrets.token_hex(16)
        port = free_port()
        env = sidecar_process_env(jupyter, token, port)
        results["sidecar"] = await bench_mcp_server(
            "sidecar",
            sidecar_command(),
            env,
            f"http://127.0.0.1:{port}/mcp",
            token,
            base / "sidecar.log",
            ours,
            ours_million,
            scale,
        )

        exe = ensure_reference()
        if isinstance(exe, str):
            results["reference"] = {"error": exe}
        else:
            ref_token = secrets.token_hex(16)
            ref_port = free_port()
            results["reference"] = await bench_mcp_server(
                "reference",
                [
                    str(exe),
                    "start",
                    "--transport",
                    "streamable-http",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ref_port),
                    "--jupyter-url",
                    jupyter.origin,
                    "--jupyter-token",
                    jupyter.token,
                    "--mcp-token",
                    ref_token,
                    "--document-id",
                    "ref.ipynb",
                ],
                {**os.environ},
                f"http://127.0.0.1:{ref_port}/mcp",
                ref_token,
                base / "reference.log",
                reference,
                reference_million,
                scale,
            )
            results["reference"]["version"] = _reference_version()
        results["floor"] = await floor(jupyter, scale)
    return results


def _reference_version() -> str:
    out = subprocess.run(
        [str(REFERENCE_VENV / "bin" / "pip"), "show", REFERENCE_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    return next(
        (ln.split(":", 1)[1].strip() for ln in out.stdout.splitlines() if ln.startswith("Version")), "?"
    )


def verdict(sidecar: dict[str, Any]) -> dict[str, bool]:
    ops = sidecar.get("ops", {})
    if not ops:
        return {}
    return {
        "execute_p50_ms": ops["execute"]["p50_ms"] <= TARGETS["execute_p50_ms"],
        "insert_p50_ms": ops["insert"]["p50_ms"] <= TARGETS["insert_p50_ms"],
        "read500_p50_ms": ops["read500"]["p50_ms"] <= TARGETS["read500_p50_ms"],
        "idle_rss_mib": sidecar["idle_rss_mib"] <= TARGETS["idle_rss_mib"],
        "ready_s": sidecar["ready_s"] <= TARGETS["ready_s"],
        "print_1mb_capped": not ops["print_1mb"].get("is_error", True)
        and ops["print_1mb"].get("answer_chars", 10**9) < 25_000,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = [s for s in ("sidecar", "reference", "floor") if "ops" in report["results"].get(s, {})]
    ops = ["execute", "insert", "read500", "read500_after_edit", "print_1mb"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(1, len(servers))
    for i, server in enumerate(servers):
        values = [report["results"][server]["ops"].get(op, {}).get("p50_ms", 0) for op in ops]
        bars = left.bar([x + i * width for x in range(len(ops))], values, width, label=server)
        left.bar_label(bars, labels=[f"{v:.0f}" if v else "" for v in values], fontsize=7)
    left.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(ops))], ops)
    left.set_yscale("log")
    left.set_ylabel("p50 latency (ms, log)")
    left.set_title("MCP tool round trip")
    left.legend()
    for i, server in enumerate(servers):  # say so where a server could not answer at all
        if "failed" in report["results"][server]["ops"].get("print_1mb", {}):
            left.annotate(
                "client\nfailed",
                (ops.index("print_1mb") + i * width, 1),
                ha="center",
                fontsize=7,
                color="tab:red",
                xycoords=("data", "axes fraction"),
                va="top",
            )
    mcp_servers = [s for s in ("sidecar", "reference") if "ops" in report["results"].get(s, {})]
    rss = [report["results"][s]["idle_rss_mib"] for s in mcp_servers]
    ready = [report["results"][s]["ready_s"] for s in mcp_servers]
    rss_bars = right.bar([x - 0.2 for x in range(len(mcp_servers))], rss, 0.4, label="idle RSS (MiB)")
    twin = right.twinx()
    ready_bars = twin.bar(
        [x + 0.2 for x in range(len(mcp_servers))], ready, 0.4, color="tab:orange", label="ready (s)"
    )
    right.bar_label(rss_bars, fmt="%.0f", fontsize=7)
    twin.bar_label(ready_bars, fmt="%.2f", fontsize=7)
    right.set_xticks(range(len(mcp_servers)), mcp_servers)
    right.set_ylabel("idle RSS (MiB)")
    twin.set_ylabel("time to ready (s)")
    right.set_title("footprint")
    right.legend(handles=[rss_bars, ready_bars], loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args, _ = parser.parse_known_args(argv)  # bench.run passes the same extra args to every benchmark
    started = time.monotonic()
    load_at_start = os.getloadavg()  # the box is shared: numbers mean more next to the load
    results = asyncio.run(run(0.25 if args.quick else 1.0))
    report = {
        "benchmark": "sidecar",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_1_5_15_at_start": load_at_start,
            "load_avg_1_5_15_at_end": os.getloadavg(),
        },
        "duration_s": round(time.monotonic() - started, 1),
        "targets": TARGETS,
        "results": results,
        "meets_targets": verdict(results.get("sidecar", {})),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sidecar.json").write_text(json.dumps(report, indent=2))
    plot(report, RESULTS / "sidecar.png")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
