"""Process plumbing for local mode: port checks, children that die with their parent, clean stops.

Nothing of the demo may outlive it: every child runs in its own session (so the terminal's Ctrl-C
reaches only the supervisor, which then stops things in order), asks the kernel to signal it when
its parent dies, and is reaped by process-tree walks on the way out.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import signal
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class PortInUse(RuntimeError):
    """A port the demo needs is taken; the message says which one and how to pick another."""


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value)


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the thread that started it dies.

    Linux-only (prctl); elsewhere a no-op, and the tree walk in ``stop_tree`` still cleans up.
    """

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, sig)

    return preexec


def become_subreaper() -> None:
    """Orphaned descendants (e.g. a server whose hub was killed) re-parent to us, so we can reap them."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def check_port_free(host: str, port: int, what: str, flag: str) -> None:
    """Raise ``PortInUse`` with a message naming the port, its role and the flag to change it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers themselves bind: connections in TIME_WAIT from a previous run are no clash.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {host} is already in use ({what}); stop whatever listens there "
                    f"or choose another port with {flag}"
                ) from None
            raise PortInUse(f"cannot use port {port} on {host} ({what}): {exc.strerror}") from None


def free_port(host: str = "127.0.0.1", candidates: Iterable[int] | None = None) -> int:
    """The first free port among ``candidates``, or any free port the kernel hands out."""
    for port in candidates or (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise PortInUse(f"no free port on {host} in the configured range")


def tail(path: Path, lines: int = 25) -> str:
    """The end of a log file, for error messages that say where things went wrong."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_processes(procs: Iterable[psutil.Process], timeout: float = 10.0) -> list[int]:
    """SIGTERM, wait, then SIGKILL what is left. Returns the pids that needed SIGKILL."""
    procs = list(procs)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            log.warning("process %s (%s) ignored SIGTERM; killing it", proc.pid, _name(proc))
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return [p.pid for p in alive]


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"
