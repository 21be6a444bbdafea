"""Sidecar memory (issue 15): a real sidecar process (RSS via psutil) against a real Jupyter server.

(i)  5 000 MCP sessions opened (initialize only, never deleted): RSS after (target <= 160 MiB).
(ii) in a fresh sidecar, one cell displaying a 40 MB PNG (scratch code, execute_code): peak RSS
     while it runs and is answered (target <= 256 MiB), RSS 60 s later (target < 120 MiB).
(iii) the same image from a notebook cell (insert_and_execute: the output is saved into the cell
     through the collaboration room, whose document then holds it): peak and after 60 s, measured.

python -m bench.memory_bench [--sessions N] [--image-mb M] [--settle S]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import results
from tests.harness.jupyter import JupyterProcess, jupyter_server, sidecar_command, sidecar_process_env
from tests.harness.mcp import INITIALIZE, MCP_HEADERS, mcp_client, text
from tests.harness.paths import free_port

TARGETS = {"sessions_rss_mib": 160, "image_peak_rss_mib": 256, "image_after_rss_mib": 120}
SAMPLE_EVERY = 0.05  # s


def rss_mib(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


class Sampler:
    """RSS of one process every SAMPLE_EVERY s in a thread (the event loop may be busy)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((round(time.monotonic() - self._started, 2), rss_mib(self.pid)))
            time.sleep(SAMPLE_EVERY)

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.samples


@contextmanager
def sidecar(jupyter: JupyterProcess, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    token = secrets.token_hex(16)
    port = free_port()
    env = sidecar_process_env(jupyter, token, port)
    url = f"http://127.0.0.1:{port}/mcp"
    with log.open("wb") as out:
        process = subprocess.Popen(sidecar_command(), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sidecar exited with {process.returncode}; see {log}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(1.0)  # settled after start-up
        yield process, url, token
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def open_sessions(url: str, token: str, count: int, pid: int) -> dict[str, Any]:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    curve: list[tuple[int, float]] = [(0, rss_mib(pid))]
    refused: dict[int, int] = {}
    opened = 0
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def one() -> None:
            nonlocal opened
            response = await http.post(url, json=INITIALIZE, headers=headers)
            if response.status_code == 200 and response.headers.get("mcp-session-id"):
                opened += 1
            else:
                refused[response.status_code] = refused.get(response.status_code, 0) + 1

        for start in range(0, count, 250):
            await asyncio.gather(*(one() for _ in range(min(250, count - start))))
            curve.append((min(count, start + 250), rss_mib(pid)))
    await asyncio.sleep(2)
    return {"sessions": count, "opened": opened, "refused": refused, "rss_mib": rss_mib(pid), "curve": curve}


def image_code(megabytes: int) -> str:
    return (
        "import os\nfrom IPython.display import Image, display\n"
        "png = b'\\x89PNG\\r\\n\\x1a\\n'\n"
        f"display(Image(data=png + os.urandom({megabytes} * 1_000_000), format='png'))\n"
        "print('displayed')"
    )


async def big_image(
    jupyter: JupyterProcess, log: Path, megabytes: int, settle: float, *, into_cell: bool
) -> dict[str, Any]:
    with sidecar(jupyter, log) as (process, url, token):
        path = f"image-{'cell' if into_cell else 'scratch'}.ipynb"
        async with mcp_client(url, token) as client:
            await client.call_tool("create_notebook", {"path": path})
            await client.call_tool("execute_code", {"path": path, "code": "1"})  # kernel up
            before = rss_mib(process.pid)
            sampler = Sampler(process.pid)
            started = time.monotonic()
            if into_cell:
                result = await client.call_tool(
                    "insert_and_execute", {"path": path, "source": image_code(megabytes), "timeout": 120}
                )
            else:
                result = await client.call_tool(
                    "execute_code", {"path": path, "code": image_code(megabytes), "timeout": 120}
                )
            answered = round(time.monotonic() - started, 2)
            answer = text(result)[:300]
            await asyncio.sleep(settle)
            samples = sampler.stop()
        return {
            "image_mb": megabytes,
            "saved_into_cell": into_cell,
            "rss_before_mib": before,
            "peak_rss_mib": max(r for _, r in samples),
            "rss_after_settle_mib": samples[-1][1],
            "settle_s": settle,
            "answered_after_s": answered,
            "answer": answer,
            "curve": samples[:: max(1, len(samples) // 400)],
        }


async def run(sessions: int, megabytes: int, settle: float) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    report: dict[str, Any] = {"machine": results.machine(), "targets_mib": TARGETS}
    with jupyter_server(base, collaborative=True, prefix="/") as jupyter:
        with sidecar(jupyter, base / "sessions.log") as (process, url, token):
            report["idle_rss_mib"] = rss_mib(process.pid)
            report["sessions"] = await open_sessions(url, token, sessions, process.pid)
        report["image_scratch"] = await big_image(
            jupyter, base / "scratch.log", megabytes, settle, into_cell=False
        )
        report["image_cell"] = await big_image(jupyter, base / "cell.log", megabytes, settle, into_cell=True)
    report["machine"] = results.machine()
    scratch = report["image_scratch"]
    report["verdict"] = {
        "sessions": report["sessions"]["rss_mib"] <= TARGETS["sessions_rss_mib"],
        "image_peak": scratch["peak_rss_mib"] <= TARGETS["image_peak_rss_mib"],
        "image_after": scratch["rss_after_settle_mib"] < TARGETS["image_after_rss_mib"],
    }
    return report


def plot(report: dict[str, Any]) -> Any:
    fig, left, right = results.two_panels(12)
    curve = report["sessions"]["curve"]
    left.plot([n for n, _ in curve], [r for _, r in curve], marker=".")
    left.set_xlabel("MCP sessions opened")
    left.set_ylabel("sidecar RSS (MiB)")
    left.set_title("idle sessions")
    results.target_line(left, TARGETS["sessions_rss_mib"])
    for key, label in (("image_scratch", "execute_code"), ("image_cell", "insert_and_execute")):
        samples = report[key]["curve"]
        right.plot([t for t, _ in samples], [r for _, r in samples], label=label)
    right.set_xlabel("s since the call")
    right.set_ylabel("sidecar RSS (MiB)")
    right.set_title(f"one {report['image_scratch']['image_mb']} MB PNG output")
    results.target_line(right, TARGETS["image_peak_rss_mib"], "peak target")
    right.axhline(TARGETS["image_after_rss_mib"], color="orange", linestyle=":", label="after-60 s target")
    right.legend()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--image-mb", type=int, default=40)
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.sessions, args.image_mb, args.settle))
    printed = {k: v for k, v in report.items() if k not in ("sessions", "image_scratch", "image_cell")}
    for key in ("sessions", "image_scratch", "image_cell"):
        printed[key] = {k: v for k, v in report[key].items() if k != "curve"}
    results.write("memory", report, plot(report), printed)
    return 0 if all(report["verdict"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
