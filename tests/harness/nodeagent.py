"""A test "node agent": the part of a kubelet the Zero to JupyterHub tier needs, for pods bound to
its own Node, with every pod's containers run as real processes on this machine (issue 13).

What it does for real
    * registers a Node (``z2jh-node-0``; not annotated for kwok, so kwok leaves it and its pods
      alone) with a ``spec.podCIDR`` it owns, labels ``kubernetes.io/hostname`` and
      ``hub.jupyter.org/node-purpose: user``, the taint ``hub.jupyter.org/dedicated=user:NoSchedule``
      (Z2JH's user pods tolerate it, nothing else does, so other tests' pods never land here), a
      Ready condition and a Lease in ``kube-node-lease`` renewed every few seconds;
    * networking: one Linux bridge holding the first address of the podCIDR (``host_ip``: the hub,
      CHP and anything else pods must reach listen there); per pod a network namespace with
      ``eth0`` (a veth on the bridge) holding an address from the podCIDR, loopback up, default
      route via ``host_ip``. Pods reach each other and ``host_ip``; the host reaches every pod IP.
      Traffic stays on the bridge: no NAT, no forwarding;
    * ``/etc/hosts`` of a pod (a per-namespace hosts file, ``ip netns exec`` binds it): localhost,
      the pod's own hostname at its IP, ``spec.hostAliases`` and the names given to the agent
      (``hub``, ``proxy-api``, ... at ``host_ip``); ``/etc/resolv.conf`` names a nameserver that
      refuses at once (no DNS in the tier: names resolve through the hosts file only);
    * volumes: secret, configMap, projected (secret, configMap, serviceAccountToken from the real
      TokenRequest API bound to the pod, downwardAPI), downwardAPI, emptyDir, hostPath, written into
      a per-pod directory under ``/var/lib/z2jh-nodeagent`` the way the kubelet writes them
      (``..data`` symlink swapped atomically) and refreshed every ``volume_sync_seconds`` (an
      optional Secret created later appears; a re-minted token shows up); each is bind-mounted
      (subPath too, readOnly honoured) onto its ``mountPath`` inside the container's own mount
      namespace;
    * containers run as processes inside the pod's network namespace (``ip netns exec``: own mount
      and UTS namespace, hostname = the pod's), with the container's env (``value``, ``valueFrom``
      fieldRef / secretKeyRef / configMapKeyRef / resourceFieldRef, ``envFrom``, ``$(VAR)``
      expansion), command + args and workingDir;
    * the kubelet's order: ordinary init containers run to completion one after the other; native
      sidecars (init containers with ``restartPolicy: Always``) start in order and the next
      container starts only once their startupProbe passed; then the main containers;
    * probes (startup, readiness, liveness; httpGet, tcpSocket, exec) against the pod IP with the
      probe's timings; readiness gates Ready; liveness and startup failures restart the container;
    * restarts per ``restartPolicy`` with a short doubling backoff (``CrashLoopBackOff``), reported;
    * pod status written by the agent: phase, podIP(s), hostIP(s), startTime, the conditions
      PodReadyToStartContainers/Initialized/ContainersReady/Ready (PodScheduled kept), container and
      init container statuses (state, lastState, started, ready, restartCount);
    * deletion: SIGTERM to the main containers, then the sidecars, SIGKILL after
      terminationGracePeriodSeconds (capped by ``max_grace_seconds``), every process left in the
      namespace killed, namespace, veth and per-pod directory removed, the pod deleted with grace 0.

What it simulates
    * images: none is pulled or run. A container maps to a program on this machine through a small
      table (``Program`` rows: by the first word of command+args, or by image for the image's
      entrypoint); a container nothing maps to stays Waiting with reason ``NoProgramForContainer``;
    * the root filesystem is this machine's: processes see the host's files apart from their
      mounts; a missing mountPath or workingDir is created on the host as an empty mount point
      (removed when the agent stops), and writes land in the per-pod directory. The checkout and
      its venv stay visible to the processes even under a volume mounted over a parent of theirs
      (an emptyDir on ``/tmp`` with the checkout in ``/tmp``): they are bind-mounted back on top.

What it does not do
    * no container isolation: no PID/user/IPC namespaces, processes run as the agent's user (root:
      the project's Python lives under /root, mode 0700, so runAsUser cannot be honoured and
      ``jupyterhub-singleuser`` gets ``--allow-root``); securityContext (runAsUser, fsGroup,
      capabilities, readOnlyRootFilesystem, seccomp) is ignored;
    * no images, no cgroups (resources are neither reserved nor limited), no eviction;
    * no CNI policy enforcement (NetworkPolicies are not applied), no Services: ClusterIPs are not
      routed, no kube-proxy, no DNS, no Service env vars; the API server (on 127.0.0.1) is not
      reachable from pods;
    * no kubelet API: no ``kubectl logs/exec/port-forward`` (logs are files under the agent's
      workdir, ``NodeAgent.logs``; ``NodeAgent.exec`` enters a container's namespaces);
    * hostNetwork pods, PersistentVolumeClaims and other volume types are reported unsupported;
      lifecycle hooks, grpc probes, ephemeral containers and in-place resize are not implemented.

For Z2JH: the user pods tolerate the node's taint and prefer its node-purpose label (set
``scheduling.userPods.nodeAffinity.matchNodePurpose: require`` so none lands on kwok's node); its
``block-cloud-metadata`` init container runs ``iptables``, which maps to nothing (turn it off with
``singleuser.cloudMetadata.blockWithIptables: false``, or add ``Program("/bin/true",
command="iptables")``); the hub must listen on ``host_ip`` and ``set_hosts`` names it for the pods.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import fcntl
import ipaddress
import json
import math
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from tests.harness.paths import REPO, VENV_BIN
from tests.harness.processes import die_with_parent

NODE_NAME = "z2jh-node-0"
NODE_PURPOSE_LABEL = "hub.jupyter.org/node-purpose"
TAINT = {"key": "hub.jupyter.org/dedicated", "value": "user", "effect": "NoSchedule"}
# What a pod needs to land on the agent's node (Z2JH's user pods carry this toleration already).
TOLERATIONS = [{"key": TAINT["key"], "operator": "Equal", "value": "user", "effect": "NoSchedule"}]
NODE_SELECTOR = {"kubernetes.io/hostname": NODE_NAME}
CIDR_BASE = "10.213.0.0/16"  # one /24 of it per agent; clear of kwok's 10.244/16 and services' 10.96/16
DEFAULT_HOST_NAMES = ("hub", "proxy-api", "proxy-public")
STATE_DIR = Path("/run/z2jh-nodeagent")  # one file per live agent: what to clean if it crashed
# Per-pod directories (volumes, homes), as the kubelet's /var/lib/kubelet/pods: not under /tmp, which
# a pod may well mount over (the sidecar does).
PODS_ROOT = Path("/var/lib/z2jh-nodeagent")
NETNS_PREFIX = "z2jh-"  # netns z2jh-<id>-<n>; links zj<id>br, zj<id>v<n>
LINK_PREFIX = "zj"
LEASE_SECONDS = 40
RENEW_EVERY = 5.0
READY_TIMEOUT = 90.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------------------------------
# Programs: which local program a container runs (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """One row of the table. A container whose command+args start with ``command`` (compared by
    basename) runs ``path`` with the rest of its words; a container without ``command`` whose image
    repository is ``image`` (or ends in ``/`` + ``image``) runs ``path`` + its args (the image's
    entrypoint). ``args`` go right after ``path``; ``env`` is the image's environment, below the
    container's own."""

    path: str
    command: str | None = None
    image: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def default_programs() -> list[Program]:
    venv = Path(VENV_BIN)
    sidecar = str(venv / "jupyterhub-mcp-sidecar")
    return [
        # Processes run as root (the project's Python lives under /root, 0700, so runAsUser cannot
        # be honoured); Jupyter refuses root unless told.
        Program(str(venv / "jupyterhub-singleuser"), command="jupyterhub-singleuser", args=("--allow-root",)),
        Program(sidecar, command="jupyterhub-mcp-sidecar"),
        Program(sidecar, command="mcp-sidecar"),
        Program(sidecar, image="jupyterhub-mcp/sidecar"),
        Program(sys.executable, command="python"),
        Program(sys.executable, command="python3"),
        Program("/bin/sh", command="sh"),
    ]


def image_repository(image: str) -> str:
    """``registry:5000/a/b:tag@sha256:..`` -> ``registry:5000/a/b``."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image = image[: len(image) - len(last)] + last.split(":", 1)[0]
    return image


def _names(row: Program, word: str) -> bool:
    """A row's command names ``word``: the same word, or (a bare name) its basename."""
    return row.command is not None and (row.command == word or row.command == os.path.basename(word))


def resolve_program(
    command: Sequence[str], args: Sequence[str], image: str, programs: Sequence[Program]
) -> list[str] | None:
    """The argv to run for a container, or None when no row maps it."""
    words = [*command, *args]
    if words:
        for row in programs:
            if _names(row, words[0]):
                return [row.path, *row.args, *words[1:]]
    if not command:
        repo = image_repository(image or "")
        for row in programs:
            if row.image is not None and (repo == row.image or repo.endswith("/" + row.image)):
                return [row.path, *row.args, *args]
    return None


def program_env(
    command: Sequence[str], args: Sequence[str], image: str, programs: Sequence[Program]
) -> Mapping[str, str]:
    words = [*command, *args]
    for row in programs:
        if words and _names(row, words[0]):
            return row.env
    repo = image_repository(image or "")
    for row in programs:
        if row.image is not None and (repo == row.image or repo.endswith("/" + row.image)):
            return row.env
    return {}


# ---------------------------------------------------------------------------------------------
# Kubelet rules (pure)
# ---------------------------------------------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: defined names are replaced, ``$$`` is ``$``, unknown
    references stay as written."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(sub, value)


def field_path_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward-API fieldRef value."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or ()),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or ()),
    }
    if path not in simple:
        raise ConfigError("CreateContainerConfigError", f"unsupported fieldRef {path!r}")
    return str(simple[path] or "")


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "m": 1e-3}


def quantity(text: str | int | float) -> float:
    text = str(text)
    for suffix, factor in _SUFFIX.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def resource_field_value(
    container: Mapping[str, Any], ref: Mapping[str, Any], node: Mapping[str, str]
) -> str:
    kind, _, name = ref["resource"].partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        raw = node.get(name, "0") if kind == "limits" else "0"
    divisor = quantity(ref.get("divisor") or "1")
    return str(math.ceil(quantity(raw) / divisor))


def hosts_file(
    pod_ip: str, hostname: str, fqdn: str | None, names: Mapping[str, str], aliases: Sequence[Any]
) -> str:
    lines = [
        "# Kubernetes-managed hosts file (z2jh node agent).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{pod_ip}\t{fqdn + chr(9) if fqdn else ''}{hostname}",
    ]
    for name, ip in names.items():
        lines.append(f"{ip}\t{name}")
    for alias in aliases:
        lines.append(f"{alias['ip']}\t" + "\t".join(alias.get("hostnames") or ()))
    return "\n".join(lines) + "\n"


def is_restartable(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def should_restart(pod_policy: str, exit_code: int, *, sidecar: bool, init: bool) -> bool:
    if sidecar:
        return True
    if init:
        return exit_code != 0 and pod_policy != "Never"
    return pod_policy == "Always" or (pod_policy == "OnFailure" and exit_code != 0)


class ConfigError(Exception):
    """A container cannot be started yet: its status says ``reason`` / ``message``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ---------------------------------------------------------------------------------------------
# Host commands
# ---------------------------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _netns_list() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_names() -> list[str]:
    out = _ip("-o", "link", "show", check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def _kill_netns_processes(netns: str, grace: float = 0.0) -> None:
    """Every process still in the network namespace: TERM, then KILL after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL) if grace else (signal.SIGKILL,):
        pids = [int(p) for p in _ip("netns", "pids", netns, check=False).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if pids and sig == signal.SIGTERM:
            psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=grace)
    deadline = time.monotonic() + 5
    while _ip("netns", "pids", netns, check=False).stdout.split() and time.monotonic() < deadline:
        time.sleep(0.05)


def _remove_netns(netns: str, host_veth: str | None) -> None:
    if netns in _netns_list():
        _kill_netns_processes(netns)
        _ip("netns", "del", netns, check=False)
    if host_veth:
        _ip("link", "del", host_veth, check=False)
    shutil.rmtree(Path("/etc/netns") / netns, ignore_errors=True)


def _alive(state: Mapping[str, Any]) -> bool:
    try:
        return psutil.Process(state["pid"]).create_time() == state["started"]
    except (psutil.Error, KeyError):
        return False


def clean_leftovers() -> list[str]:
    """Remove what crashed agents left (netns, links, /etc/netns dirs, mount points); returns what
    was removed. Agents alive (their state file names a live process) are left alone."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    live: set[str] = set()
    dead: list[dict[str, Any]] = []
    for path in STATE_DIR.glob("*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        (live.add(state["id"]) if _alive(state) else dead.append(state))
    removed: list[str] = []
    id_of_ns = re.compile(rf"^{NETNS_PREFIX}([0-9a-f]{{6}})-")
    id_of_link = re.compile(rf"^{LINK_PREFIX}([0-9a-f]{{6}})(br|v[0-9a-f]+)$")
    for ns in _netns_list():
        m = id_of_ns.match(ns)
        if m and m.group(1) not in live:
            _remove_netns(ns, None)
            removed.append(f"netns {ns}")
    for link in _link_names():
        m = id_of_link.match(link)
        if m and m.group(1) not in live:
            _ip("link", "del", link, check=False)
            removed.append(f"link {link}")
    etc = Path("/etc/netns")
    for d in etc.glob(f"{NETNS_PREFIX}*") if etc.exists() else ():
        m = id_of_ns.match(d.name)
        if m and m.group(1) not in live:
            shutil.rmtree(d, ignore_errors=True)
    for d in PODS_ROOT.iterdir() if PODS_ROOT.exists() else ():
        if d.name not in live:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"pod dirs {d}")
    for state in dead:
        _remove_mount_points(state.get("mount_points") or [])
        shutil.rmtree(PODS_ROOT / state["id"], ignore_errors=True)
        (STATE_DIR / f"{state['id']}.json").unlink(missing_ok=True)
        removed.append(f"state {state['id']}")
    return removed


def _remove_mount_points(paths: Sequence[str]) -> None:
    """Remove the (empty) mount points an agent created, deepest first; never anything with content."""
    for p in sorted(paths, key=lambda s: -s.count("/")):
        path = Path(p)
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()


# ---------------------------------------------------------------------------------------------
# The launcher: runs inside `ip netns exec` (own mount + UTS namespace), mounts, then execs
# ---------------------------------------------------------------------------------------------

LAUNCHER = r"""
import ctypes, json, os, socket, sys
spec = json.load(open(sys.argv[1]))
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
def mount(src, tgt, flags):
    if libc.mount(src.encode() if src else None, tgt.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        sys.exit(f"node agent launcher: mount {src} on {tgt}: {os.strerror(err)}")
# Nothing mounted here may reach the host's mount namespace.
mount(None, "/", MS_REC | MS_PRIVATE)
if libc.unshare(0x04000000) == 0:  # CLONE_NEWUTS: the pod's hostname
    socket.sethostname(spec["hostname"])
# Open every source before mounting anything: a mount on /tmp must not hide a later source.
fds = [os.open(m["source"], os.O_PATH) for m in spec["mounts"]]
keep = [(os.open(p, os.O_PATH), p) for p in spec.get("keep", ()) if os.path.isdir(p)]
cwd = os.open(spec["cwd"], os.O_RDONLY | os.O_DIRECTORY)
for fd, m in sorted(zip(fds, spec["mounts"]), key=lambda x: x[1]["target"].rstrip("/").count("/")):
    mount(f"/proc/self/fd/{fd}", m["target"], MS_BIND | MS_REC)
    if m["readonly"]:
        mount(None, m["target"], MS_BIND | MS_REMOUNT | MS_RDONLY)
# The programs (a checkout, its venv) are this machine's files: a volume mounted over one of
# their parents (an emptyDir on /tmp, with the checkout under /tmp) must not hide them.
for fd, path in keep:
    hidden = any(path == m["target"].rstrip("/") or path.startswith(m["target"].rstrip("/") + "/")
                 for m in spec["mounts"])
    if hidden:
        try:
            os.makedirs(path, exist_ok=True)  # inside the volume: lands in the pod's directory
        except OSError:
            continue  # a read-only volume: the container sees what the pod spec says
        mount(f"/proc/self/fd/{fd}", path, MS_BIND | MS_REC)
for fd in [*fds, *(fd for fd, _ in keep)]:
    os.close(fd)
try:
    os.chdir(spec["cwd"])  # the mounted view first (a volume mounted on the working dir)
except OSError:
    os.fchdir(cwd)
os.close(cwd)
argv = spec["argv"]
try:
    os.execve(argv[0], argv, spec["env"])
except OSError as e:
    sys.exit(f"node agent launcher: exec {argv[0]}: {e}")
"""


# ---------------------------------------------------------------------------------------------
# API server client (async, httpx)
# ---------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:500]}")
        self.status = status


class Kube:
    """Just the REST calls a kubelet makes, with the kubeconfig's client certificate."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"]
        ctx_ssl = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        cert, key = workdir / "client.crt", workdir / "client.key"
        for path, data in ((cert, user["client-certificate-data"]), (key, user["client-key-data"])):
            path.write_bytes(base64.b64decode(data))
            path.chmod(0o600)
        ctx_ssl.load_cert_chain(cert, key)
        self._ssl = ctx_ssl
        self.http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Kube:
        self.http = httpx.AsyncClient(base_url=self.server, verify=self._ssl, trust_env=False, timeout=15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.http is not None
        await self.http.aclose()

    async def request(
        self, method: str, path: str, body: Any = None, *, content_type: str | None = None, **params: Any
    ) -> Any:
        assert self.http is not None
        headers = {"Content-Type": content_type} if content_type else {}
        response = await self.http.request(
            method,
            path,
            params=params or None,
            content=None if body is None else json.dumps(body),
            headers=headers,
        )
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.text)
        return response.json() if response.content else None

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, **params)

    async def optional(self, path: str) -> Any:
        try:
            return await self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def merge_patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def watch(self, path: str, **params: Any) -> Any:
        assert self.http is not None
        params = {**params, "watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "60"}
        async with self.http.stream(
            "GET", path, params=params, timeout=httpx.Timeout(90, connect=10)
        ) as response:
            if response.status_code >= 400:
                raise ApiError(response.status_code, (await response.aread()).decode())
            async for line in response.aiter_lines():
                if line.strip():
                    yield json.loads(line)


# ---------------------------------------------------------------------------------------------
# Per-pod runtime
# ---------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


@dataclass
class ContainerState:
    spec: dict[str, Any]
    init: bool
    sidecar: bool
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "PodInitializing"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    ready: bool = False
    restarts: int = 0
    succeeded: bool = False  # an ordinary init container that exited 0 / a main one done for good
    failed: bool = False  # done for good with a non-zero exit
    pid: int | None = None
    proc: asyncio.subprocess.Process | None = None
    started_event: asyncio.Event = field(default_factory=asyncio.Event)
    done_event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.spec["name"]

    def status(self) -> dict[str, Any]:
        image = self.spec.get("image", "")
        out: dict[str, Any] = {
            "name": self.name,
            "image": image,
            "imageID": f"nodeagent://{image}",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restarts,
            "state": self.state,
        }
        if self.pid:
            out["containerID"] = f"nodeagent://{self.pid}"
        if self.last_state:
            out["lastState"] = self.last_state
        return out


class PodRunner:
    def __init__(self, agent: NodeAgent, pod: dict[str, Any], seq: int) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.netns = f"{NETNS_PREFIX}{agent.id}-{seq}"
        self.host_veth = f"{LINK_PREFIX}{agent.id}v{seq:x}"
        self.dir = PODS_ROOT / agent.id / self.netns
        self.log_dir = agent.workdir / "logs" / self.namespace / self.name
        self.ip: str | None = None
        spec = pod["spec"]
        self.containers = [ContainerState(c, init=False, sidecar=False) for c in spec.get("containers") or ()]
        self.inits = [
            ContainerState(c, init=True, sidecar=is_restartable(c)) for c in spec.get("initContainers") or ()
        ]
        self.initialized = False
        self.sandbox_ready = False
        self.phase = "Pending"
        self.start_time = _now()
        self.stopping = asyncio.Event()
        self.grace = 0.0
        self.delete_object = True
        self.terminated = asyncio.Event()
        self._dirty = asyncio.Event()
        self._last_status: dict[str, Any] | None = None
        self._conditions: dict[str, tuple[str, str]] = {}
        self._volumes_payload: dict[str, Any] = {}
        self._tokens: dict[str, tuple[float, float]] = {}  # volume/path -> (issued, ttl)
        self.task: asyncio.Task[None] | None = None
        self.message: str | None = None

    # ----- bookkeeping
    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def event(self, container: str, what: str) -> None:
        self.agent.record(self.namespace, self.name, container, what)

    def changed(self) -> None:
        self._dirty.set()

    def update(self, pod: dict[str, Any]) -> None:
        self.pod["metadata"] = pod["metadata"]
        self.pod["status"] = pod.get("status") or {}
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and not self.stopping.is_set():
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            self.request_stop(float(grace), delete_object=True)

    def request_stop(self, grace: float, *, delete_object: bool) -> None:
        self.grace = min(grace, self.agent.max_grace_seconds)
        self.delete_object = delete_object
        self.stopping.set()

    # ----- main flow
    async def run(self) -> None:
        writer = asyncio.create_task(self._status_writer())
        try:
            lifecycle = asyncio.create_task(self._lifecycle())
            stop = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({lifecycle, stop}, return_when=asyncio.FIRST_COMPLETED)
            failure = lifecycle.exception() if lifecycle.done() and not lifecycle.cancelled() else None
            if failure is not None:
                self.message = f"node agent: {failure!r}"
                self.event("-", f"pod failed to start: {failure!r}")
                self.changed()
            if not stop.done():
                # Done by itself (a terminal phase, or it could not start): its sidecars and its
                # sandbox go now, the object stays until it is deleted.
                grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
                self.grace = min(grace, self.agent.max_grace_seconds)
                await self._terminate()
                await stop
            else:
                await self._terminate()
            lifecycle.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await lifecycle
        except Exception as e:
            self.agent.record(self.namespace, self.name, "-", f"runner error: {e!r}")
            await asyncio.to_thread(self._teardown_sandbox)
        finally:
            self.changed()
            await asyncio.sleep(0)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if self.delete_object:
                with contextlib.suppress(ApiError, httpx.HTTPError):
                    await self.agent.kube.request(
                        "DELETE",
                        f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                        {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                    )
            self.terminated.set()

    async def _lifecycle(self) -> None:
        if self.pod["spec"].get("hostNetwork"):
            self.message = "hostNetwork pods are not supported by the node agent"
            for c in self.inits + self.containers:
                c.state = {"waiting": {"reason": "Unsupported", "message": self.message}}
            self.changed()
            await asyncio.Event().wait()
        await asyncio.to_thread(self._setup_sandbox)
        self.sandbox_ready = True
        self.changed()
        while True:
            try:
                await self._sync_volumes()
                break
            except ConfigError as e:
                for c in self.inits + self.containers:
                    c.state = {"waiting": {"reason": "ContainerCreating", "message": e.message}}
                self.changed()
                await asyncio.sleep(1)
        volume_sync = asyncio.create_task(self._volume_sync_loop())
        tasks = []
        try:
            for c in self.inits:
                tasks.append(asyncio.create_task(self._run_container(c)))
                await (c.started_event.wait() if c.sidecar else c.done_event.wait())
                if c.failed:
                    self.phase = "Failed"
                    self.changed()
                    return
            self.initialized = True
            for c in self.containers:
                c.state = {"waiting": {"reason": "ContainerCreating"}}
            self.changed()
            for c in self.containers:
                tasks.append(asyncio.create_task(self._run_container(c)))
            await asyncio.gather(*(c.done_event.wait() for c in self.containers))
            self.phase = "Failed" if any(c.failed for c in self.containers) else "Succeeded"
            self.changed()
        finally:
            volume_sync.cancel()
            for t in tasks:
                t.cancel()

    # ----- sandbox
    def _setup_sandbox(self) -> None:
        self.ip = self.agent.allocate_ip(self.uid)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.write_hosts()
        etc = Path("/etc/netns") / self.netns
        (etc / "resolv.conf").write_text(
            "# z2jh node agent: no DNS, names come from /etc/hosts\n"
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        )
        _ip("netns", "add", self.netns)
        _ip("link", "add", self.host_veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        _ip("link", "set", self.host_veth, "master", self.agent.bridge)
        _ip("link", "set", self.host_veth, "up")
        _ip("-n", self.netns, "addr", "add", f"{self.ip}/{self.agent.network.prefixlen}", "dev", "eth0")
        _ip("-n", self.netns, "link", "set", "eth0", "up")
        _ip("-n", self.netns, "link", "set", "lo", "up")
        _ip("-n", self.netns, "route", "add", "default", "via", self.agent.host_ip)

    def hostname(self) -> tuple[str, str | None]:
        spec = self.pod["spec"]
        host = (spec.get("hostname") or self.name)[:63]
        fqdn = (
            f"{host}.{spec['subdomain']}.{self.namespace}.svc.cluster.local"
            if spec.get("subdomain")
            else None
        )
        return host, fqdn

    def write_hosts(self) -> None:
        if not self.ip:
            return
        etc = Path("/etc/netns") / self.netns
        etc.mkdir(parents=True, exist_ok=True)
        host, fqdn = self.hostname()
        text = hosts_file(self.ip, host, fqdn, self.agent.hosts, self.pod["spec"].get("hostAliases") or ())
        path = etc / "hosts"
        # In place: `ip netns exec` bind-mounted this inode into running containers.
        with open(path, "a+") as f:
            f.seek(0)
            if f.read() != text:
                f.seek(0)
                f.truncate()
                f.write(text)

    def _teardown_sandbox(self) -> None:
        _remove_netns(self.netns, self.host_veth)
        self.agent.release_ip(self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ----- volumes
    def volume_dir(self, name: str) -> Path:
        return self.dir / "volumes" / name

    async def _volume_sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.agent.volume_sync_seconds)
            with contextlib.suppress(ConfigError, ApiError, httpx.HTTPError):
                await self._sync_volumes()

    async def _sync_volumes(self) -> None:
        for volume in self.pod["spec"].get("volumes") or ():
            name = volume["name"]
            target = self.volume_dir(name)
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
                continue
            if "hostPath" in volume:
                continue
            payload = await self._payload(volume)
            if payload is None:
                raise ConfigError(
                    "ContainerCreating",
                    f"volume {name!r}: unsupported type ({sorted(set(volume) - {'name'})})",
                )
            if self._volumes_payload.get(name) != payload:
                write_atomic(target, payload)
                self._volumes_payload[name] = payload

    async def _payload(self, volume: Mapping[str, Any]) -> dict[str, tuple[bytes, int]] | None:
        if "secret" in volume:
            src = volume["secret"]
            return await self._from_object(
                "secrets", src.get("secretName", ""), src, src.get("defaultMode", 0o644)
            )
        if "configMap" in volume:
            src = volume["configMap"]
            return await self._from_object(
                "configmaps", src.get("name", ""), src, src.get("defaultMode", 0o644)
            )
        if "downwardAPI" in volume:
            src = volume["downwardAPI"]
            return self._downward(src.get("items") or (), src.get("defaultMode", 0o644))
        if "projected" in volume:
            src = volume["projected"]
            mode = src.get("defaultMode", 0o644)
            out: dict[str, tuple[bytes, int]] = {}
            for source in src.get("sources") or ():
                if "secret" in source:
                    s = source["secret"]
                    out.update(await self._from_object("secrets", s.get("name", ""), s, mode))
                elif "configMap" in source:
                    s = source["configMap"]
                    out.update(await self._from_object("configmaps", s.get("name", ""), s, mode))
                elif "downwardAPI" in source:
                    out.update(self._downward(source["downwardAPI"].get("items") or (), mode))
                elif "serviceAccountToken" in source:
                    s = source["serviceAccountToken"]
                    out[s["path"]] = (await self._token(volume["name"], s), mode)
                else:
                    return None
            return out
        return None

    async def _from_object(
        self, kind: str, name: str, src: Mapping[str, Any], mode: int
    ) -> dict[str, tuple[bytes, int]]:
        obj = await self.agent.kube.optional(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        if obj is None:
            if src.get("optional"):
                return {}
            raise ConfigError("ContainerCreating", f'{kind[:-1]} "{name}" not found')
        data: dict[str, bytes] = {}
        if kind == "secrets":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = src.get("items")
        if not items:
            return {k: (v, mode) for k, v in data.items()}
        out = {}
        for item in items:
            if item["key"] not in data:
                if src.get("optional"):
                    continue
                raise ConfigError("ContainerCreating", f'key "{item["key"]}" not in {kind[:-1]} "{name}"')
            out[item["path"]] = (data[item["key"]], item.get("mode", mode))
        return out

    def _downward(self, items: Sequence[Mapping[str, Any]], mode: int) -> dict[str, tuple[bytes, int]]:
        out = {}
        for item in items:
            if "fieldRef" in item:
                value = field_path_value(self.pod_view(), item["fieldRef"]["fieldPath"])
            else:
                ref = item["resourceFieldRef"]
                c = next(
                    (x.spec for x in self.inits + self.containers if x.name == ref.get("containerName")), {}
                )
                value = resource_field_value(c, ref, self.agent.capacity)
            out[item["path"]] = (value.encode(), item.get("mode", mode))
        return out

    async def _token(self, volume: str, src: Mapping[str, Any]) -> bytes:
        ttl = float(src.get("expirationSeconds") or 3600)
        key = f"{volume}/{src['path']}"
        issued, old_ttl = self._tokens.get(key, (0.0, ttl))
        payload = self._volumes_payload.get(volume) or {}
        if key in self._tokens and time.time() < issued + 0.8 * old_ttl and src["path"] in payload:
            return payload[src["path"]][0]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        spec: dict[str, Any] = {
            "expirationSeconds": int(ttl),
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.name, "uid": self.uid},
        }
        if src.get("audience"):
            spec["audiences"] = [src["audience"]]
        try:
            answer = await self.agent.kube.request(
                "POST",
                f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
            )
        except ApiError as e:
            raise ConfigError("ContainerCreating", f"token for service account {sa}: {e}") from e
        self._tokens[key] = (time.time(), ttl)
        return answer["status"]["token"].encode()

    def pod_view(self) -> dict[str, Any]:
        """The pod as the downward API sees it (with the status the agent knows)."""
        view = copy.deepcopy(self.pod)
        view["status"] = {
            "hostIP": self.agent.host_ip,
            "hostIPs": [{"ip": self.agent.host_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}] if self.ip else [],
        }
        return view

    # ----- containers
    async def _container_config(self, c: ContainerState) -> tuple[dict[str, Any], Path]:
        """(launcher spec, log path) for a container, resolving env and mounts like the kubelet."""
        spec = c.spec
        home = self.dir / "containers" / c.name / "home"
        home.mkdir(parents=True, exist_ok=True)
        command = list(spec.get("command") or ())
        args = list(spec.get("args") or ())
        image = spec.get("image", "")
        env: dict[str, str] = {
            "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            "HOSTNAME": self.hostname()[0],
            "LANG": "C.UTF-8",
        }
        env.update(program_env(command, args, image, self.agent.programs))
        for source in spec.get("envFrom") or ():
            prefix = source.get("prefix", "")
            kind, ref = (
                ("secrets", source["secretRef"])
                if "secretRef" in source
                else ("configmaps", source["configMapRef"])
            )
            obj = await self.agent.kube.optional(f"/api/v1/namespaces/{self.namespace}/{kind}/{ref['name']}")
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError("CreateContainerConfigError", f'{kind[:-1]} "{ref["name"]}" not found')
            for k, v in (obj.get("data") or {}).items():
                env[prefix + k] = base64.b64decode(v).decode() if kind == "secrets" else v
        for var in spec.get("env") or ():
            value = await self._env_value(c, var, env)
            if value is not None:
                env[var["name"]] = value
        command = [expand(w, env) for w in command]
        args = [expand(w, env) for w in args]
        argv = resolve_program(command, args, image, self.agent.programs)
        if argv is None:
            raise ConfigError(
                "NoProgramForContainer",
                f"node agent: no program mapped for command {command + args} (image {image!r}); "
                "add a nodeagent.Program row",
            )
        if not os.access(argv[0], os.X_OK):
            raise ConfigError(
                "NoProgramForContainer", f"node agent: program {argv[0]} is not executable here"
            )
        mounts = []
        for vm in spec.get("volumeMounts") or ():
            mounts.append(self._mount(vm, env))
        cwd = spec.get("workingDir") or str(home)
        if not os.path.isdir(cwd):
            # The image would have it: a per-container directory mounted there.
            own = self.dir / "containers" / c.name / "workdir"
            own.mkdir(parents=True, exist_ok=True)
            self.agent.mount_point(cwd, directory=True)
            mounts.append({"source": str(own), "target": cwd, "readonly": False})
        launch = {
            "argv": argv,
            "env": env,
            "cwd": cwd,
            "hostname": self.hostname()[0],
            "mounts": mounts,
            "keep": [str(REPO), str(Path(VENV_BIN).parent)],
        }
        return launch, self.log_dir / f"{c.name}.log"

    def _mount(self, vm: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        volume = next((v for v in self.pod["spec"].get("volumes") or () if v["name"] == vm["name"]), None)
        if volume is None:
            raise ConfigError("CreateContainerConfigError", f"volumeMount {vm['name']!r}: no such volume")
        if "hostPath" in volume:
            source = Path(volume["hostPath"]["path"])
        else:
            source = self.volume_dir(vm["name"])
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
        if sub:
            source = source / sub
            if not source.exists() and "emptyDir" in volume:
                source.mkdir(parents=True)
            source = source.resolve()
        if not source.exists():
            raise ConfigError("CreateContainerConfigError", f"volumeMount {vm['name']!r}: {source} missing")
        target = vm["mountPath"]
        self.agent.mount_point(target, directory=source.is_dir())
        read_only = bool(vm.get("readOnly")) or any(
            k in volume for k in ("secret", "configMap", "projected", "downwardAPI")
        )
        return {"source": str(source), "target": target, "readonly": read_only}

    async def _env_value(
        self, c: ContainerState, var: Mapping[str, Any], env: Mapping[str, str]
    ) -> str | None:
        if "valueFrom" not in var:
            return expand(var.get("value", ""), env)
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            return field_path_value(self.pod_view(), ref["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in ref:
            return resource_field_value(c.spec, ref["resourceFieldRef"], self.agent.capacity)
        kind, key_ref = (
            ("secrets", ref["secretKeyRef"])
            if "secretKeyRef" in ref
            else ("configmaps", ref["configMapKeyRef"])
        )
        obj = await self.agent.kube.optional(f"/api/v1/namespaces/{self.namespace}/{kind}/{key_ref['name']}")
        data = (obj or {}).get("data") or {}
        if key_ref["key"] not in data:
            if key_ref.get("optional"):
                return None
            what = f'{kind[:-1]} "{key_ref["name"]}"'
            raise ConfigError(
                "CreateContainerConfigError",
                f"{what} not found" if obj is None else f'key "{key_ref["key"]}" not in {what}',
            )
        value = data[key_ref["key"]]
        return base64.b64decode(value).decode() if kind == "secrets" else value

    async def _spawn(self, launch: Mapping[str, Any], log: Path, tag: str) -> asyncio.subprocess.Process:
        spec_file = self.dir / f"launch-{tag}.json"
        spec_file.write_text(json.dumps(launch))
        spec_file.chmod(0o600)
        argv = [
            "ip",
            "netns",
            "exec",
            self.netns,
            sys.executable,
            "-I",
            "-S",
            str(self.agent.launcher),
            str(spec_file),
        ]
        with open(log, "ab") as out:
            out.write(f"--- {_now()} node agent: starting {tag}: {launch['argv']}\n".encode())
            out.flush()
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    async def _run_container(self, c: ContainerState) -> None:
        backoff = self.agent.backoff[0]
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            try:
                launch, log = await self._container_config(c)
            except ConfigError as e:
                if c.state.get("waiting", {}).get("reason") != e.reason:
                    self.event(c.name, f"waiting {e.reason}")
                c.state = {"waiting": {"reason": e.reason, "message": e.message}}
                self.changed()
                await asyncio.sleep(self.agent.config_retry_seconds)
                continue
            c.proc = await self._spawn(launch, log, c.name)
            c.pid = c.proc.pid
            started_at = _now()
            ran_from = time.monotonic()
            c.state = {"running": {"startedAt": started_at}}
            c.ready = False
            self.event(c.name, "started")
            probes = asyncio.create_task(self._probe_loop(c))
            self.changed()
            code = await c.proc.wait()
            probes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probes
            self.event(c.name, f"exited {code}")
            code = 128 - code if code < 0 else code  # killed by a signal: 128 + signal number
            c.started = c.ready = False
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": _now(),
                "containerID": f"nodeagent://{c.pid}",
            }
            c.state = {"terminated": terminated}
            if self.stopping.is_set():
                self.changed()
                return
            if not should_restart(policy, code, sidecar=c.sidecar, init=c.init):
                c.succeeded, c.failed = code == 0, code != 0
                if c.init and code == 0:
                    c.ready = True
                self.changed()
                c.done_event.set()
                return
            c.last_state = {"terminated": terminated}
            c.restarts += 1
            if time.monotonic() - ran_from > 60:
                backoff = self.agent.backoff[0]
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff:.1f}s restarting failed container={c.name}",
                }
            }
            self.changed()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.agent.backoff[1])

    # ----- probes
    async def _probe_loop(self, c: ContainerState) -> None:
        spec = c.spec
        startup = spec.get("startupProbe")
        # An ordinary init container has no probes; a main container or native sidecar does.
        if c.init and not c.sidecar:
            return
        if startup:
            if not await self._probe_until(c, startup, success=True):
                self.event(c.name, "startup probe failed: killing")
                await self._kill(c, signal.SIGKILL)
                return
        c.started = True
        self.event(c.name, "started probe passed" if startup else "started (no startupProbe)")
        c.started_event.set()
        readiness = spec.get("readinessProbe")
        if not readiness:
            c.ready = True
        self.changed()
        loops = []
        if readiness:
            loops.append(self._readiness_loop(c, readiness))
        if spec.get("livenessProbe"):
            loops.append(self._liveness_loop(c, spec["livenessProbe"]))
        if loops:
            await asyncio.gather(*loops)

    async def _probe_until(self, c: ContainerState, probe: Mapping[str, Any], *, success: bool) -> bool:
        """Run ``probe`` every period until it passes (True) or fails failureThreshold times (False)."""
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        failures, successes = 0, 0
        while True:
            ok = await self._probe_once(c, probe)
            if ok:
                successes += 1
                failures = 0
                if successes >= probe.get("successThreshold", 1):
                    return True
            else:
                failures += 1
                successes = 0
                if failures >= probe.get("failureThreshold", 3):
                    return False
            await asyncio.sleep(max(probe.get("periodSeconds", 10), 1))

    async def _readiness_loop(self, c: ContainerState, probe: Mapping[str, Any]) -> None:
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        failures, successes = 0, 0
        while True:
            ok = await self._probe_once(c, probe)
            failures, successes = (0, successes + 1) if ok else (failures + 1, 0)
            if ok and successes >= probe.get("successThreshold", 1) and not c.ready:
                c.ready = True
                self.event(c.name, "ready")
                self.changed()
            elif not ok and failures >= probe.get("failureThreshold", 3) and c.ready:
                c.ready = False
                self.event(c.name, "not ready")
                self.changed()
            await asyncio.sleep(max(probe.get("periodSeconds", 10), 1))

    async def _liveness_loop(self, c: ContainerState, probe: Mapping[str, Any]) -> None:
        if not await self._probe_until_failure(c, probe):
            return
        self.event(c.name, "liveness probe failed: killing")
        await self._kill(c, signal.SIGKILL)

    async def _probe_until_failure(self, c: ContainerState, probe: Mapping[str, Any]) -> bool:
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        failures = 0
        while True:
            failures = 0 if await self._probe_once(c, probe) else failures + 1
            if failures >= probe.get("failureThreshold", 3):
                return True
            await asyncio.sleep(max(probe.get("periodSeconds", 10), 1))

    def _port(self, c: ContainerState, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or ():
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"no port named {port!r}")

    async def _probe_once(self, c: ContainerState, probe: Mapping[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                h = probe["httpGet"]
                host = h.get("host") or self.ip
                scheme = h.get("scheme", "HTTP").lower()
                url = f"{scheme}://{host}:{self._port(c, h['port'])}{h.get('path', '/')}"
                headers = {x["name"]: x["value"] for x in h.get("httpHeaders") or ()}
                r = await self.agent.probe_http.get(url, headers=headers, timeout=timeout)
                return 200 <= r.status_code < 400
            if "tcpSocket" in probe:
                t = probe["tcpSocket"]
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(t.get("host") or self.ip, self._port(c, t["port"])), timeout
                )
                writer.close()
                return True
            if "exec" in probe:
                return await self._exec_probe(c, probe["exec"].get("command") or [], timeout)
        except (TimeoutError, httpx.HTTPError, OSError, ValueError, ConfigError):
            return False
        return False  # grpc: not implemented

    async def _exec_probe(self, c: ContainerState, command: list[str], timeout: float) -> bool:
        launch, log = await self._container_config(c)
        argv = resolve_program(command, [], "", self.agent.programs)
        if argv is None:
            return False
        launch = {**launch, "argv": argv}
        proc = await self._spawn(launch, log.with_suffix(".probe.log"), f"{c.name}-probe")
        try:
            return await asyncio.wait_for(proc.wait(), timeout) == 0
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return False

    async def _kill(self, c: ContainerState, sig: int) -> None:
        proc = c.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        child.kill()

    # ----- termination
    async def _terminate(self) -> None:
        deadline = time.monotonic() + self.grace
        self.event("-", f"terminating (grace {self.grace:.0f}s)")

        async def stop(group: list[ContainerState]) -> None:
            for c in group:
                await self._kill(c, signal.SIGTERM)
            waits = [c.proc.wait() for c in group if c.proc and c.proc.returncode is None]
            if waits:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*waits), max(deadline - time.monotonic(), 0.01))

        await stop(self.containers)
        for c in reversed(self.inits):
            await stop([c])
        for c in self.inits + self.containers:
            await self._kill(c, signal.SIGKILL)
        for c in self.inits + self.containers:
            if c.proc and c.proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(c.proc.wait(), 5)
        await asyncio.to_thread(self._teardown_sandbox)
        self.event("-", "sandbox removed")

    # ----- status
    def _condition(self, kind: str, ok: bool) -> dict[str, Any]:
        status = "True" if ok else "False"
        old = self._conditions.get(kind)
        if old is None or old[0] != status:
            self._conditions[kind] = (status, _now())
        return {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._conditions[kind][1],
        }

    def build_status(self) -> dict[str, Any]:
        if self.phase == "Pending" and any("running" in c.state for c in self.containers):
            self.phase = "Running"  # and it stays Running while containers restart
        phase = self.phase
        ready_containers = all(c.ready for c in self.containers) and all(
            c.ready for c in self.inits if c.sidecar
        )
        gates = [g["conditionType"] for g in self.pod["spec"].get("readinessGates") or ()]
        existing = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or ()}
        gates_ok = all(existing.get(g, {}).get("status") == "True" for g in gates)
        conditions = [
            self._condition("PodReadyToStartContainers", self.sandbox_ready),
            self._condition("Initialized", self.initialized),
            self._condition("ContainersReady", ready_containers and phase == "Running"),
            self._condition("Ready", ready_containers and phase == "Running" and gates_ok),
            existing.get("PodScheduled")
            or {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": self.start_time,
            },
        ]
        conditions += [existing[g] for g in gates if g in existing]
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": self.agent.host_ip,
            "hostIPs": [{"ip": self.agent.host_ip}],
            "startTime": self.start_time,
            "conditions": conditions,
            "containerStatuses": [c.status() for c in self.containers],
            "qosClass": (self.pod.get("status") or {}).get("qosClass", "BestEffort"),
        }
        if self.inits:
            status["initContainerStatuses"] = [c.status() for c in self.inits]
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if self.message:
            status["message"] = self.message
        return status

    async def _status_writer(self) -> None:
        try:
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                await self._write_status()
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._write_status()
            raise

    async def _write_status(self) -> None:
        status = self.build_status()
        if status == self._last_status:
            return
        try:
            answer = await self.agent.kube.merge_patch(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status", {"status": status}
            )
            self._last_status = status
            if answer and answer.get("metadata", {}).get("uid") == self.uid:
                self.pod["status"] = answer.get("status") or {}
        except ApiError as e:
            if e.status != 404:
                self.agent.record(self.namespace, self.name, "-", f"status write failed: {e}")
                self._dirty.set()
        except httpx.HTTPError as e:
            self.agent.record(self.namespace, self.name, "-", f"status write failed: {e!r}")
            self._dirty.set()


def write_atomic(target: Path, payload: Mapping[str, tuple[bytes, int]]) -> None:
    """The kubelet's AtomicWriter: files in a fresh ``..<ts>`` dir, ``..data`` swapped to it in one
    rename, each top-level name a symlink through ``..data``; a reader never sees half an update."""
    target.mkdir(parents=True, exist_ok=True)
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{secrets.token_hex(4)}"
    stamp.mkdir()
    for rel, (data, mode) in payload.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    tmp = target / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp.name)
    old = os.readlink(target / "..data") if (target / "..data").is_symlink() else None
    os.replace(tmp, target / "..data")
    tops = {rel.split("/", 1)[0] for rel in payload}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in tops:
            entry.unlink()
    if old:
        shutil.rmtree(target / old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------------------------


class NodeAgent:
    """Context manager: ``with NodeAgent(cp.kubeconfig, workdir) as agent: ...`` (a background
    thread with its own event loop). ``host_ip``, ``network``, ``bridge``, ``node_name`` are set
    once entered.

    For tests: ``pod_fields()`` (nodeSelector + toleration to land here), ``set_hosts`` (names in
    every pod's /etc/hosts), ``add_program`` (a row of the program table, ahead of the defaults;
    a pod stuck on NoProgramForContainer picks it up), ``exec`` / ``container_pid`` / ``pod_dir``
    (a running container's view), ``logs`` / ``events_of`` (for failure messages and ordering),
    ``check_alive``."""

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        *,
        node_name: str = NODE_NAME,
        host_names: Sequence[str] = DEFAULT_HOST_NAMES,
        hosts: Mapping[str, str] | None = None,
        programs: Sequence[Program] | None = None,
        max_grace_seconds: float = 5.0,
        volume_sync_seconds: float = 2.0,
        config_retry_seconds: float = 1.0,
        backoff: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.workdir = Path(workdir)
        self.node_name = node_name
        self._host_names = tuple(host_names)
        self._extra_hosts = dict(hosts or {})
        self.programs: list[Program] = list(programs if programs is not None else default_programs())
        self.max_grace_seconds = max_grace_seconds
        self.volume_sync_seconds = volume_sync_seconds
        self.config_retry_seconds = config_retry_seconds
        self.backoff = backoff
        self.capacity = {"cpu": "32", "memory": "256Gi", "pods": "250", "ephemeral-storage": "1Ti"}
        self.id = secrets.token_hex(3)
        self.bridge = f"{LINK_PREFIX}{self.id}br"
        self.network: ipaddress.IPv4Network = ipaddress.IPv4Network("0.0.0.0/32")
        self.host_ip = ""
        self.hosts: dict[str, str] = {}
        self.events: list[tuple[float, str, str, str, str]] = []  # (monotonic, ns, pod, container, what)
        self.runners: dict[str, PodRunner] = {}
        self._ips: dict[str, str] = {}
        self._seq = 0
        self._background: set[asyncio.Task[None]] = set()
        self._mount_points: list[str] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.launcher = self.workdir / "launcher.py"
        self.kube: Kube
        self.probe_http: httpx.AsyncClient

    # ----- public helpers
    def record(self, namespace: str, pod: str, container: str, what: str) -> None:
        with self._lock:
            self.events.append((time.monotonic(), namespace, pod, container, what))

    def events_of(self, namespace: str, pod: str) -> list[tuple[str, str]]:
        with self._lock:
            return [(c, w) for _, ns, p, c, w in self.events if ns == namespace and p == pod]

    def logs(self, namespace: str, pod: str) -> str:
        """Every container log of a pod (for failure messages), with the agent's events for it."""
        parts = [f"events: {self.events_of(namespace, pod)}"]
        for log in sorted((self.workdir / "logs" / namespace / pod).glob("*.log")):
            parts.append(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def runner(self, namespace: str, pod: str) -> PodRunner | None:
        return next(
            (r for r in list(self.runners.values()) if r.namespace == namespace and r.name == pod), None
        )

    def netns_of(self, namespace: str, pod: str) -> str:
        r = self.runner(namespace, pod)
        if r is None:
            raise KeyError(f"no pod {namespace}/{pod} on {self.node_name}")
        return r.netns

    def exec(
        self, namespace: str, pod: str, container: str, argv: Sequence[str], timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (a host program) in a running container's network, mount and UTS namespaces,
        as ``kubectl exec`` would."""
        pid = self.container_pid(namespace, pod, container)
        return subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "-m", "-u", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def container_pid(self, namespace: str, pod: str, container: str) -> int:
        """The pid of a running container's process (its /proc/<pid>/environ is the container's env)."""
        r = self.runner(namespace, pod)
        c = next((x for x in (r.inits + r.containers) if x.name == container), None) if r else None
        if c is None or c.proc is None or c.proc.returncode is not None:
            raise KeyError(f"container {container} of {namespace}/{pod} is not running")
        return c.proc.pid

    def add_program(self, program: Program) -> None:
        """A row ahead of the table's others (rows are tried in order)."""
        self.programs.insert(0, program)

    def pod_dir(self, namespace: str, pod: str) -> Path:
        """The pod's directory: ``volumes/<name>``, ``containers/<name>/home`` (HOME and, without a
        workingDir, the cwd: where jupyterhub-singleuser keeps its notebooks)."""
        r = self.runner(namespace, pod)
        if r is None:
            raise KeyError(f"no pod {namespace}/{pod} on {self.node_name}")
        return r.dir

    def set_hosts(self, hosts: Mapping[str, str]) -> None:
        """Add or change names in every pod's /etc/hosts (running pods included)."""
        self._extra_hosts.update(hosts)
        self.hosts = self._all_hosts()
        for r in list(self.runners.values()):
            with contextlib.suppress(OSError):
                r.write_hosts()

    def _all_hosts(self) -> dict[str, str]:
        return {**{name: self.host_ip for name in self._host_names}, **self._extra_hosts}

    def check_alive(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"node agent failed: {self._error!r}")
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("node agent is not running")

    def pod_fields(self) -> dict[str, Any]:
        """What to add to a pod spec so the scheduler puts it on this agent's node."""
        return {"nodeSelector": {"kubernetes.io/hostname": self.node_name}, "tolerations": list(TOLERATIONS)}

    # ----- host resources
    def allocate_ip(self, uid: str) -> str:
        with self._lock:
            if uid in self._ips:
                return self._ips[uid]
            used = set(self._ips.values())
            for host in self.network.hosts():
                ip = str(host)
                if ip != self.host_ip and ip not in used:
                    self._ips[uid] = ip
                    return ip
        raise RuntimeError(f"podCIDR {self.network} exhausted")

    def release_ip(self, uid: str) -> None:
        with self._lock:
            self._ips.pop(uid, None)

    def mount_point(self, path: str, *, directory: bool) -> None:
        """Make sure ``path`` exists on the host to mount onto; remember what was created."""
        p = Path(path)
        if p.exists():
            return
        missing = [a for a in [p, *p.parents] if not a.exists()]
        for a in reversed(missing):
            try:
                if a == p and not directory:
                    a.touch(exist_ok=False)
                else:
                    a.mkdir()
            except FileExistsError:
                continue  # another agent made it just now: it is that agent's to remove
            self._remember(str(a))

    def _remember(self, path: str) -> None:
        with self._lock:
            self._mount_points.append(path)
        self._save_state()

    def _save_state(self) -> None:
        state = {
            "id": self.id,
            "pid": os.getpid(),
            "started": psutil.Process().create_time(),
            "bridge": self.bridge,
            "network": str(self.network),
            "mount_points": self._mount_points,
        }
        tmp = STATE_DIR / f".{self.id}.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, STATE_DIR / f"{self.id}.json")

    def _setup_network(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        with open(STATE_DIR / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            clean_leftovers()
            taken = []
            for line in _ip("-4", "-o", "addr", "show", check=False).stdout.splitlines():
                m = re.search(r"inet (\S+)", line)
                if m:
                    taken.append(ipaddress.IPv4Interface(m.group(1)).network)
            for line in _ip("-4", "route", "show", check=False).stdout.splitlines():
                first = line.split()[0]
                if first != "default":
                    with contextlib.suppress(ValueError):
                        taken.append(ipaddress.IPv4Network(first, strict=False))
            for candidate in ipaddress.IPv4Network(CIDR_BASE).subnets(new_prefix=24):
                if not any(candidate.overlaps(t) for t in taken):
                    self.network = candidate
                    break
            else:
                raise RuntimeError(f"no free /24 left in {CIDR_BASE}")
            self.host_ip = str(next(self.network.hosts()))
            self._save_state()
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_ip}/{self.network.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        self.hosts = self._all_hosts()

    def _teardown_network(self) -> None:
        for r in list(self.runners.values()):
            with contextlib.suppress(Exception):
                r._teardown_sandbox()
        for ns in _netns_list():
            if ns.startswith(f"{NETNS_PREFIX}{self.id}-"):
                _remove_netns(ns, None)
        for link in _link_names():
            if link.startswith(f"{LINK_PREFIX}{self.id}"):
                _ip("link", "del", link, check=False)
        _remove_mount_points(self._mount_points)
        shutil.rmtree(PODS_ROOT / self.id, ignore_errors=True)
        with contextlib.suppress(OSError):
            PODS_ROOT.rmdir()  # only when no other agent has pods there
        (STATE_DIR / f"{self.id}.json").unlink(missing_ok=True)

    # ----- lifecycle
    def __enter__(self) -> NodeAgent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.launcher.write_text(LAUNCHER)
        self._setup_network()
        try:
            self._thread = threading.Thread(
                target=self._thread_main, name=f"node-agent-{self.id}", daemon=True
            )
            self._thread.start()
            if not self._ready.wait(READY_TIMEOUT) or self._error is not None:
                raise RuntimeError(f"node agent did not get ready: {self._error!r}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(60)
        self._teardown_network()

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with (
            Kube(self.kubeconfig, self.workdir) as kube,
            httpx.AsyncClient(verify=False, trust_env=False) as probe_http,
        ):
            self.kube = kube
            self.probe_http = probe_http
            await self._register_node()
            tasks = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._watch_pods())]
            await self._wait_schedulable()
            self._ready.set()
            await self._stop.wait()
            for t in tasks:
                t.cancel()
            for r in list(self.runners.values()):
                r.request_stop(0, delete_object=False)
            await asyncio.gather(*(r.terminated.wait() for r in list(self.runners.values())))
            # The node goes with the agent, so nothing is scheduled onto a node nobody runs.
            with contextlib.suppress(ApiError, httpx.HTTPError):
                await kube.request("DELETE", f"/api/v1/nodes/{self.node_name}")

    def _node_status(self) -> dict[str, Any]:
        now = _now()

        def cond(kind: str, status: str, reason: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": "z2jh node agent",
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._started_at,
            }

        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                cond("Ready", "True", "KubeletReady"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": self.id,
                "systemUUID": self.id,
                "bootID": self.id,
                "kernelVersion": os.uname().release,
                "osImage": "z2jh node agent",
                "containerRuntimeVersion": "nodeagent://0",
                "kubeletVersion": "v0.0.0-nodeagent",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def _register_node(self) -> None:
        self._started_at = _now()
        path = f"/api/v1/nodes/{self.node_name}"
        if await self.kube.optional(path) is not None:
            # podCIDR is immutable: a node left by an earlier agent is replaced.
            await self.kube.request("DELETE", path)
            for _ in range(200):
                if await self.kube.optional(path) is None:
                    break
                await asyncio.sleep(0.1)
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    NODE_PURPOSE_LABEL: "user",
                    "type": "z2jh-nodeagent",
                },
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"podCIDR": str(self.network), "podCIDRs": [str(self.network)], "taints": [TAINT]},
            "status": self._node_status(),
        }
        created = await self.kube.request("POST", "/api/v1/nodes", node)
        self._node_uid = created["metadata"]["uid"]
        await self.kube.merge_patch(f"{path}/status", {"status": self._node_status()})
        await self._renew_lease()

    async def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": _micro_now(),
        }
        lease = await self.kube.optional(path)
        if lease is None:
            await self.kube.request(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.node_name,
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": self.node_name,
                                "uid": self._node_uid,
                            }
                        ],
                    },
                    "spec": spec,
                },
            )
        else:
            await self.kube.merge_patch(path, {"spec": spec})

    async def _heartbeat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(RENEW_EVERY)
            beats += 1
            try:
                await self._renew_lease()
                if beats % 4 == 0:
                    await self.kube.merge_patch(
                        f"/api/v1/nodes/{self.node_name}/status", {"status": self._node_status()}
                    )
            except (ApiError, httpx.HTTPError) as e:
                self.record("-", "-", "-", f"heartbeat failed: {e!r}")

    async def _wait_schedulable(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            node = await self.kube.get(f"/api/v1/nodes/{self.node_name}")
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions") or ()
            )
            taints = {t["key"] for t in node["spec"].get("taints") or ()}
            if ready and not taints - {TAINT["key"]}:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"node {self.node_name} did not become Ready and untainted")

    async def _watch_pods(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        while True:
            try:
                listing = await self.kube.get("/api/v1/pods", fieldSelector=selector)
                seen = set()
                for pod in listing.get("items") or ():
                    seen.add(pod["metadata"]["uid"])
                    self._on_pod(pod, deleted=False)
                for uid, r in list(self.runners.items()):
                    if uid not in seen:
                        r.request_stop(0, delete_object=False)
                version = listing["metadata"]["resourceVersion"]
                while True:
                    async for event in self.kube.watch(
                        "/api/v1/pods", fieldSelector=selector, resourceVersion=version
                    ):
                        obj = event.get("object") or {}
                        if event["type"] == "ERROR":
                            raise ApiError(obj.get("code", 500), str(obj))
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self._on_pod(obj, deleted=event["type"] == "DELETED")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.record("-", "-", "-", f"watch restarted: {e!r}")
                await asyncio.sleep(0.5)

    def _on_pod(self, pod: dict[str, Any], *, deleted: bool) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        r = self.runners.get(uid)
        if deleted:
            if r is not None:
                r.request_stop(0, delete_object=False)
            return
        if r is not None:
            r.update(pod)
            return
        if meta.get("deletionTimestamp"):
            task = asyncio.create_task(self._delete_now(meta))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        self._seq += 1
        r = PodRunner(self, pod, self._seq)
        self.runners[uid] = r
        self.record(r.namespace, r.name, "-", f"admitted as {r.netns}")

        async def run() -> None:
            try:
                await r.run()
            finally:
                self.runners.pop(uid, None)

        r.task = asyncio.create_task(run())

    async def _delete_now(self, meta: Mapping[str, Any]) -> None:
        with contextlib.suppress(ApiError, httpx.HTTPError):
            await self.kube.request(
                "DELETE",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )


@contextlib.contextmanager
def running_node_agent(kubeconfig: Path, workdir: Path | None = None, **options: Any) -> Iterator[NodeAgent]:
    """``NodeAgent`` as a plain context manager (a temporary workdir unless one is given)."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nodeagent-")))
        yield stack.enter_context(NodeAgent(kubeconfig, workdir, **options))


__all__ = [
    "DEFAULT_HOST_NAMES",
    "NODE_NAME",
    "NODE_SELECTOR",
    "TAINT",
    "TOLERATIONS",
    "ConfigError",
    "NodeAgent",
    "Program",
    "clean_leftovers",
    "default_programs",
    "expand",
    "field_path_value",
    "hosts_file",
    "image_repository",
    "resolve_program",
    "running_node_agent",
    "should_restart",
    "write_atomic",
]
