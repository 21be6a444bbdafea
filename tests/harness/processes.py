"""Child processes of the tests: gone with pytest, stopped with their whole tree, waited for by port."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil


def die_with_parent() -> None:
    """A ``preexec_fn``: in the child before exec, get SIGKILLed if pytest dies without running
    teardown (Linux only; elsewhere a no-op).

    The signal follows the *thread* that spawned the child, so start long-lived processes from the
    main thread (pytest fixtures do), not from a short-lived worker thread.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_http(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 90.0,
    log: Path | None = None,
) -> None:
    """Until ``url`` answers 200; fail early (with the log) if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            detail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered:\n{detail}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # waiting for a child process to bind a port: nothing to wait on but the port
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL: the process, its group, and any child left behind (kernels run in
    sessions of their own, so the group alone would miss them)."""
    if process.poll() is not None:
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
