"""Zero to JupyterHub's hub and proxy, run from the real chart: ``start_z2jh`` / ``Z2JH``.

What is real:

- **The chart**: the upstream Z2JH chart from ``../shared/z2jh/zero-to-jupyterhub-k8s-48ea50e.tar.gz``
  (unpacked once into ``$CACHE/z2jh/<tarball hash>``, never copied into the repository), installed
  with the real ``helm`` into a fresh namespace of the test control plane. The values set only
  what needs a real kubelet (``prePuller.hook``/``prePuller.continuous`` off,
  ``scheduling.userScheduler`` off), the image tags the chart leaves as ``set-by-chartpress``
  (``IMAGE_TAG``; no image is ever pulled), ``scheduling.userPods.nodeAffinity.matchNodePurpose:
  require`` (user pods need a node labeled ``hub.jupyter.org/node-purpose: user``), and one hub
  service ``harness-admin`` with a role of admin scopes (``hub.services`` + ``hub.loadRoles``: the
  chart generates its token into the Secret ``hub``). The caller's values are merged on top.
- **The hub**: ``jupyterhub`` 5.5.0 with ``jupyterhub-kubespawner`` 7.1.0, ``kubernetes-asyncio``
  and everything else pinned in the chart's ``images/hub/requirements.txt``, installed as pinned
  (all pins install on Python 3.11) into a venv under ``$CACHE/z2jh-hub-venv-<hash>`` keyed by the
  requirements and the Python version, built on first use. It runs the hub container's own
  ``args`` from the installed Deployment (``jupyterhub --config
  /usr/local/etc/jupyterhub/jupyterhub_config.py --upgrade-db``), i.e. Z2JH's own
  ``jupyterhub_config.py`` and ``z2jh.py``, reading the ConfigMap and Secret ``hub`` as the API
  server holds them, materialised at the Deployment's ``volumeMounts`` (read-only, like the
  kubelet's), the PVC mount ``/srv/jupyterhub`` (the sqlite database, the working directory) on
  a per-test directory, and the ``hub`` ServiceAccount's credentials at
  ``/var/run/secrets/kubernetes.io/serviceaccount`` (a TokenRequest token, the namespace's
  ``kube-root-ca.crt``, the namespace). The mounts exist only in a private mount namespace
  (``unshare --mount --propagation private --pid --fork --kill-child`` running a generated
  ``/bin/sh`` wrapper that bind-mounts, then execs: the program is PID 1 of its own PID
  namespace, as in a pod, so its children die with it and it dies with pytest); a missing mount
  point is created inside an overlay of its nearest existing ancestor whose upper layer is
  per-test, so the host's ``/usr/local/etc``, ``/srv``, ``/run`` and ``/etc/hosts`` are never
  written. Stopping it is the kubelet's: SIGTERM to PID 1 (the hub stops its idle culler itself),
  SIGKILL after a grace period. KubeSpawner talks to the test API server through
  ``load_incluster_config`` with that token (no kubeconfig is reachable: ``KUBECONFIG=/dev/null``,
  a per-test ``HOME``), so Z2JH's own Role and RoleBinding are what it may do.
- **The proxy**: ``configurable-http-proxy`` 5.3.0 (the version of Z2JH's proxy image) from
  ``node_modules``, run with the proxy container's ``command`` + ``args`` from the installed
  Deployment (``--ip= --api-ip= --api-port=8001 --default-target=http://hub:$(HUB_SERVICE_PORT)
  --error-target=http://hub:$(HUB_SERVICE_PORT)/hub/error --port=8000``) and its env
  (``CONFIGPROXY_AUTH_TOKEN`` from the Secret ``hub``), in a mount namespace of its own.
- **Env**: each process gets its container's ``env`` resolved as the kubelet does (``value``,
  ``fieldRef``, ``secretKeyRef``, ``configMapKeyRef``, ``$(VAR)`` expansion), ``HOSTNAME``, and the
  Service environment variables Kubernetes injects for ``hub``, ``proxy-api``, ``proxy-public``
  (``*_SERVICE_HOST``/``*_SERVICE_PORT``/``*_SERVICE_PORT_<NAME>``/``*_PORT*``) and
  ``kubernetes`` (the test API server), not the test process's environment.

What is simulated, and how:

- **Services and DNS**: there is no kube-proxy or cluster DNS. A kubelet-style hosts file (bind
  over ``/etc/hosts`` in each mount namespace) maps ``hub``, ``proxy-api``, ``proxy-public`` (and
  their ``.<ns>.svc[.cluster.local]`` forms) to ``host_ip`` (default 127.0.0.1; the node agent
  passes an address its pods can reach), and each Service's port is the free host port its
  process listens on (so ``HUB_SERVICE_PORT`` etc. carry it).
- **Ports**, the one change to what the chart configures: in a pod the hub listens on ``:8081`` and
  CHP on ``:8000``/``:8001`` of their own network namespaces; here they share the host's, so each
  gets a free port. CHP's ``--port``/``--api-port`` arguments are rewritten to them; for the hub,
  the file ``zz-harness-ports.py`` in ``/usr/local/etc/jupyterhub/jupyterhub_config.d`` (which
  Z2JH's config loads, like a user's ``hub.extraFiles`` would) sets ``hub_bind_url`` to
  ``http://:<port>`` (still every interface, as ``http://:8081``) and points the idle culler's
  ``--url=http://localhost:8081/...`` at that port. Nothing else of the config is touched.
- **The pods of the hub and proxy Deployments** exist in the API server but no container of theirs
  runs: the hub's stays Pending (its PVC ``hub-db-dir`` has no provisioner), kwok marks the
  proxy's Running. The processes here stand in for them. They run as root, not as the
  ``securityContext``'s uid 1000, and without container isolation.
- The ServiceAccount token is requested through TokenRequest for the ServiceAccount (24 h), not
  bound to a pod object as the kubelet's projected token is (a ``helm upgrade`` replaces the pod).

``Z2JH`` exposes ``public_url`` (proxy-public, with ``base_url``), ``proxy_api_url`` +
``proxy_token``, ``hub_api_url``, ``namespace``, ``release``, ``secret(key)`` / ``secret_data()``
(the Secret ``hub`` as the API server holds it), ``admin_token`` (the ``harness-admin`` service's
token from that Secret), ``api(method, path)`` as that service, ``sa_token`` (the hub's
ServiceAccount token), ``stop()``, ``restart_proxy()`` (CHP's routing table starts empty),
``restart_hub()``, ``upgrade(values)`` (``helm upgrade``, then the process of each Deployment
whose pod template changed restarts, as a rollout would: the hub on any Secret change, the proxy
on the first upgrade, as Z2JH's chart says), ``logs()`` and ``hub_log``/``proxy_log`` (files;
``harness.log`` beside them says what the harness started and stopped, when; failures quote the
tails). Both processes listen on every interface (as ``--ip=`` and ``http://:8081`` say), so
``host_ip`` reaches them.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from tests.harness.paths import CACHE, NODE_BIN, REPO, free_port
from tests.harness.processes import die_with_parent, stop

TARBALL = Path(
    os.environ.get("Z2JH_TARBALL", REPO.parent / "shared" / "z2jh" / "zero-to-jupyterhub-k8s-48ea50e.tar.gz")
)
# The commit the tarball was taken at: what replaces the chart's `set-by-chartpress` image tags.
IMAGE_TAG = "48ea50e"
ADMIN_SERVICE = "harness-admin"
ADMIN_SCOPES = (
    "admin:users",
    "admin:servers",
    "access:servers",
    "read:users",
    "list:users",
    "tokens",
    "users:activity",
    "read:hub",
)
START_TIMEOUT = 120.0  # a cold hub start (sqlite schema, KubeSpawner) on a loaded 2-core box
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ---------------------------------------------------------------------------------------------
# The chart and the hub venv (cached outside the repository)
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock: two test processes never build the same cache entry at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def unpack_chart(tarball: Path = TARBALL) -> Path:
    """The unpacked tarball's top directory (holds ``jupyterhub/`` and ``images/hub/``)."""
    if not tarball.exists():
        raise FileNotFoundError(f"Z2JH chart tarball not found at {tarball} (see ../shared/z2jh/README.md)")
    dest = CACHE / "z2jh" / _file_hash(tarball)
    done = dest / ".unpacked"
    with _locked(CACHE / "z2jh" / ".lock"):
        if not done.exists():
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            with tarfile.open(tarball) as tar:
                tar.extractall(dest, filter="data")
            done.touch()
    (top,) = [p for p in dest.iterdir() if p.is_dir()]
    return top


def chart_dir(root: Path) -> Path:
    return root / "jupyterhub"


def hub_requirements(root: Path) -> Path:
    return root / "images" / "hub" / "requirements.txt"


def venv_key(requirements: str, python_version: str) -> str:
    """The venv's cache key: the pinned requirements and the Python they were installed for."""
    return hashlib.sha256(f"{python_version}\n{requirements}".encode()).hexdigest()[:12]


@dataclass
class HubVenv:
    path: Path
    build_seconds: float | None  # None: it was cached

    @property
    def bin(self) -> Path:
        return self.path / "bin"


def effective_requirements(pinned: str, can_build_psycopg2: bool) -> str:
    """The pins as given, except one substitution where a pin cannot be built here: ``psycopg2``
    is an sdist needing libpq's ``pg_config``; without it, ``psycopg2-binary`` at the same version
    (the same module, prebuilt; the hub only imports it for ``hub.db.type: postgres``)."""
    if can_build_psycopg2:
        return pinned
    return re.sub(
        r"^psycopg2==(\S+)",
        r"psycopg2-binary==\1  # jupyterhub-mcp harness: no pg_config to build psycopg2",
        pinned,
        flags=re.MULTILINE,
    )


def ensure_hub_venv(root: Path, python: str = sys.executable) -> HubVenv:
    """The hub venv with Z2JH's pinned hub requirements, built on first use (a minute or two, once).
    All pins install on Python 3.11 as they are (psycopg2 is built from source: see
    ``effective_requirements`` for the one substitution, made only without ``pg_config``)."""
    pinned = hub_requirements(root).read_text()
    wanted = effective_requirements(pinned, can_build_psycopg2=shutil.which("pg_config") is not None)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    path = CACHE / f"z2jh-hub-venv-py{version}-{venv_key(wanted, version)}"
    requirements = CACHE / f"{path.name}.requirements.txt"
    done = path / ".installed"
    if done.exists():
        return HubVenv(path, None)
    with _locked(CACHE / "z2jh-hub-venv.lock"):
        if done.exists():
            return HubVenv(path, None)
        started = time.monotonic()
        shutil.rmtree(path, ignore_errors=True)
        log = CACHE / f"{path.name}.build.log"
        requirements.write_text(wanted)
        with log.open("wb") as out:
            steps = [
                [python, "-m", "venv", str(path)],
                [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
                [str(path / "bin" / "python"), "-m", "pip", "install", "-r", str(requirements)],
            ]
            for argv in steps:
                if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                    raise RuntimeError(f"building the Z2JH hub venv failed at {argv}:\n{tail}")
        done.write_text(wanted)
        return HubVenv(path, time.monotonic() - started)


# ---------------------------------------------------------------------------------------------
# Values (pure)
# ---------------------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of values files: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def harness_values(tag: str = IMAGE_TAG) -> dict[str, Any]:
    """Only what needs a real kubelet off, the placeholder tags set, user pods on the user node,
    and the harness's admin service."""
    return {
        "hub": {
            "image": {"tag": tag},
            "services": {ADMIN_SERVICE: {}},
            "loadRoles": {ADMIN_SERVICE: {"scopes": list(ADMIN_SCOPES), "services": [ADMIN_SERVICE]}},
        },
        "singleuser": {"image": {"tag": tag}, "networkTools": {"image": {"tag": tag}}},
        "proxy": {"secretSync": {"image": {"tag": tag}}},
        "prePuller": {"hook": {"enabled": False, "image": {"tag": tag}}, "continuous": {"enabled": False}},
        "scheduling": {
            "userScheduler": {"enabled": False},
            "userPods": {"nodeAffinity": {"matchNodePurpose": "require"}},
        },
    }


# ---------------------------------------------------------------------------------------------
# What the kubelet would give a container (pure)
# ---------------------------------------------------------------------------------------------


def env_name(service: str) -> str:
    return service.upper().replace("-", "_")


def service_links(service: str, host: str, ports: list[tuple[str | None, int, str]]) -> dict[str, str]:
    """The docker-link style variables the kubelet sets for a Service: ``ports`` are
    (port name, port, protocol) in the Service's order, the first one being *the* port."""
    prefix = env_name(service)
    if not ports:
        return {}
    first = ports[0]
    env = {
        f"{prefix}_SERVICE_HOST": host,
        f"{prefix}_SERVICE_PORT": str(first[1]),
        f"{prefix}_PORT": f"{first[2].lower()}://{host}:{first[1]}",
    }
    for name, port, proto in ports:
        if name:
            env[f"{prefix}_SERVICE_PORT_{env_name(name)}"] = str(port)
        base = f"{prefix}_PORT_{port}_{proto.upper()}"
        env[base] = f"{proto.lower()}://{host}:{port}"
        env[f"{base}_PROTO"] = proto.lower()
        env[f"{base}_PORT"] = str(port)
        env[f"{base}_ADDR"] = host
    return env


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, others stay."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(sub, value)


def resolve_env(
    container: Mapping[str, Any],
    *,
    base: Mapping[str, str],
    fields: Mapping[str, str],
    secrets: Mapping[str, Mapping[str, str]],
    configmaps: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    """A container's environment as the kubelet builds it: ``base`` (service links), then
    ``envFrom``, then ``env`` in order with ``$(VAR)`` references to what came before."""
    env = dict(base)
    for source in container.get("envFrom") or ():
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            data = secrets[source["secretRef"]["name"]]
        else:
            data = configmaps[source["configMapRef"]["name"]]
        env.update({prefix + key: value for key, value in data.items()})
    for item in container.get("env") or ():
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
            continue
        ref = item.get("valueFrom", {})
        if "fieldRef" in ref:
            env[item["name"]] = fields[ref["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in ref:
            env[item["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            env[item["name"]] = configmaps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
        else:
            raise ValueError(f"unsupported env source for {item['name']}: {ref}")
    return env


def hosts_file(namespace: str, names: list[str], ip: str, pod_ip: str, hostname: str) -> str:
    """A kubelet-style hosts file, plus the Services' names (what cluster DNS would answer)."""
    lines = [
        "# Kubernetes-managed hosts file (jupyterhub-mcp test harness: Services resolve here).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{pod_ip}\t{hostname}",
    ]
    for name in names:
        lines.append(f"{ip}\t{name} {name}.{namespace}.svc {name}.{namespace}.svc.cluster.local")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False


def _nearest_existing(path: str) -> str:
    current = path
    while not os.path.lexists(current):
        current = os.path.dirname(current)
    return current


def wrapper_script(mounts: list[Mount], overlay_root: Path, cwd: str) -> str:
    """The /bin/sh program run by ``unshare --mount``: mount, then exec the container's argv.

    A mount point that does not exist is created inside an overlay of its nearest existing
    ancestor (upper layer under ``overlay_root``), so the host's directories stay untouched.
    """
    lines = ["#!/bin/sh", "set -eu"]
    overlaid: list[str] = []
    for mount in mounts:
        if os.path.lexists(mount.target):
            continue
        ancestor = os.path.realpath(_nearest_existing(mount.target))
        if ancestor == "/":
            raise ValueError(f"refusing to overlay / for the mount point {mount.target}")
        if any(ancestor == o or ancestor.startswith(o + "/") for o in overlaid):
            continue
        layer = overlay_root / str(len(overlaid))
        (layer / "upper").mkdir(parents=True, exist_ok=True)
        (layer / "work").mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={ancestor},upperdir={layer / 'upper'},workdir={layer / 'work'}"
        lines.append(f"mount -t overlay z2jh-harness -o {shlex.quote(options)} {shlex.quote(ancestor)}")
        overlaid.append(ancestor)
    for mount in mounts:
        target = shlex.quote(mount.target)
        if mount.source.is_dir():
            lines.append(f"[ -d {target} ] || mkdir -p {target}")
        else:
            lines.append(f"[ -e {target} ] || {{ mkdir -p $(dirname {target}); : > {target}; }}")
        lines.append(f"mount --bind {shlex.quote(str(mount.source))} {target}")
        if mount.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    lines += [f"cd {shlex.quote(cwd)}", 'exec "$@"', ""]
    return "\n".join(lines)


def _write_volume(dest: Path, data: Mapping[str, bytes], items: list[dict] | None) -> None:
    """A configMap/secret volume's files (``items`` maps keys to paths, as the kubelet does)."""
    dest.mkdir(parents=True, exist_ok=True)
    pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
    for key, rel in pairs:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[key])


def mount_namespaces_problem() -> str | None:
    """Why processes cannot get a private mount namespace here, or None."""
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not on PATH"
    argv = [*_unshare_prefix(), "true"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if result.returncode:
        return f"`{' '.join(argv)}` fails: {result.stderr.strip()}"
    return None


def _unshare_prefix() -> list[str]:
    """A private mount namespace, and a PID namespace as a pod has: the program is its PID 1, so
    when it exits (or ``unshare`` dies: ``--kill-child``, e.g. with pytest) its children go too."""
    prefix = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
    ]
    if os.geteuid() != 0:
        prefix[1:1] = ["--user", "--map-root-user"]
    return prefix


# ---------------------------------------------------------------------------------------------
# The running hub and proxy
# ---------------------------------------------------------------------------------------------


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class _PodProcess:
    """One container of a Deployment's pod, run as a local process in its own mount namespace."""

    name: str
    workdir: Path
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    cwd: str
    popen: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} already running"
        script = self.workdir / f"{self.name}-mounts.sh"
        script.write_text(wrapper_script(self.mounts, self.workdir / f"{self.name}-overlay", self.cwd))
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [*_unshare_prefix(), "--", "/bin/sh", str(script), *self.argv],
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
        self.note(f"started pid {self.popen.pid}: {shlex.join(self.argv)}")

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 30.0) -> None:
        """As the kubelet stops a container: SIGTERM to its PID 1 only (the program stops its own
        children, e.g. the hub its idle culler), SIGKILL after the grace period; ``unshare`` then
        exits, and the PID namespace (with anything left in it) and the mount namespace are gone."""
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            programs = psutil.Process(self.popen.pid).children()
        except psutil.Error:
            programs = []
        started = time.monotonic()
        for program in programs:
            with contextlib.suppress(psutil.Error):
                program.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            stop(self.popen, timeout=5)
        self.note(f"stopped {[p.pid for p in programs]} in {time.monotonic() - started:.1f} s")

    def note(self, line: str) -> None:
        """A line in the harness's own log (what it did, when): ``harness.log`` in the workdir."""
        with (self.workdir / "harness.log").open("a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {self.name}: {line}\n")

    def wait_http(self, url: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                code = self.popen.returncode if self.popen else None
                raise RuntimeError(f"{self.name} exited ({code}) before {url} answered:\n{_tail(self.log)}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {url} not ready after {timeout:.0f} s:\n{_tail(self.log)}")
            time.sleep(0.1)  # another process binding its port: nothing else to wait on


@dataclass
class Z2JH:
    """A Z2JH release in the test control plane, its hub and proxy running here."""

    controlplane: Any
    workdir: Path
    namespace: str
    release: str
    chart: Path
    venv: HubVenv
    values: dict[str, Any]
    host_ip: str = "127.0.0.1"
    hub_port: int = field(default_factory=free_port)
    proxy_public_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    hub: _PodProcess | None = None
    proxy: _PodProcess | None = None
    sa_token: str = field(default="", repr=False)
    names: dict[str, str] = field(default_factory=dict)
    stopped: bool = False
    _api: Any = field(default=None, repr=False)

    # -- what tests use -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``hub.baseUrl`` as JupyterHub normalises it: with a leading and a trailing slash."""
        base = str(self.values.get("hub", {}).get("baseUrl") or "/")
        return "/" + base.strip("/") + "/" if base.strip("/") else "/"

    @property
    def public_url(self) -> str:
        """proxy-public, with the base URL (no trailing slash): ``{public_url}/hub/api``."""
        return f"http://{self.host_ip}:{self.proxy_public_port}{self.base_url.rstrip('/')}"

    @property
    def hub_api_url(self) -> str:
        return f"http://{self.host_ip}:{self.hub_port}{self.base_url}hub/api"

    @property
    def proxy_api_url(self) -> str:
        return f"http://{self.host_ip}:{self.proxy_api_port}"

    @property
    def proxy_token(self) -> str:
        return self.secret("hub.config.ConfigurableHTTPProxy.auth_token")

    @property
    def admin_token(self) -> str:
        return self.secret(f"hub.services.{ADMIN_SERVICE}.apiToken")

    @property
    def hub_log(self) -> Path:
        return self.workdir / "hub.log"

    @property
    def proxy_log(self) -> Path:
        return self.workdir / "proxy.log"

    def secret_data(self, name: str | None = None) -> dict[str, str]:
        """A Secret of the release (default: ``hub``) as the API server holds it, decoded."""
        from kubernetes import client

        api = self.controlplane.api_client()
        try:
            secret = client.CoreV1Api(api).read_namespaced_secret(name or self.names["hub"], self.namespace)
        finally:
            api.close()
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def secret(self, key: str) -> str:
        """One key of the rendered Secret ``hub`` (e.g. ``hub.services.<name>.apiToken``)."""
        return self.secret_data()[key]

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """The hub's REST API (directly, not through CHP) as the admin service, or as ``token``."""
        headers = {"Authorization": f"token {token or self.admin_token}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.hub_api_url}{path}", headers=headers, timeout=30, **kwargs)

    def logs(self) -> str:
        return f"--- hub ---\n{_tail(self.hub_log)}\n--- proxy ---\n{_tail(self.proxy_log)}"

    # -- lifecycle --------------------------------------------------------------------------------

    def install(self) -> None:
        values_file = self.workdir / "values.yaml"
        values_file.write_text(yaml.safe_dump(self.values))
        self.controlplane.helm(
            "install",
            self.release,
            str(self.chart),
            "--namespace",
            self.namespace,
            "--create-namespace",
            "--values",
            str(values_file),
            timeout=180,
        )

    def upgrade(self, values: Mapping[str, Any]) -> None:
        """``helm upgrade`` with ``values`` merged into the current ones, then restart what a
        Deployment would (a process whose pod template changed)."""
        before = self._pod_templates()
        self.values = deep_merge(self.values, values)
        values_file = self.workdir / "values.yaml"
        values_file.write_text(yaml.safe_dump(self.values))
        self.controlplane.helm(
            "upgrade",
            self.release,
            str(self.chart),
            "-n",
            self.namespace,
            "-f",
            str(values_file),
            timeout=180,
        )
        after = self._pod_templates()
        if after["proxy"] != before["proxy"]:
            self.restart_proxy()
        if after["hub"] != before["hub"]:
            self.restart_hub()

    def start(self) -> None:
        """Materialise what the pods would see, start CHP, then the hub; wait until both answer."""
        self._read_names()
        self.proxy = self._up("proxy")
        self.hub = self._up("hub")

    def restart_proxy(self) -> None:
        """CHP stopped and started again on the same ports: its routing table is empty after."""
        assert self.proxy is not None
        self.proxy.stop()
        self.proxy = self._up("proxy")

    def restart_hub(self) -> None:
        """The hub stopped and started again (same database), re-reading the ConfigMap and Secret."""
        assert self.hub is not None
        self.hub.stop()
        self.hub = self._up("hub")

    def _up(self, component: str) -> _PodProcess:
        started = time.monotonic()
        if component == "hub":
            process = self._hub_process()
            ready = f"http://{self.host_ip}:{self.hub_port}{self._hub_readiness_path()}"
        else:
            process = self._proxy_process()
            ready = f"http://{self.host_ip}:{self.proxy_public_port}/_chp_healthz"
        materialised = time.monotonic()
        process.start()
        process.wait_http(ready)
        ready_after = time.monotonic() - materialised
        process.note(f"materialised in {materialised - started:.1f} s, ready {ready_after:.1f} s later")
        return process

    def stop(self, uninstall: bool = True) -> None:
        """Stop both processes (their mount namespaces go with them); uninstall and delete the namespace."""
        if self.stopped:
            return
        self.stopped = True
        for process in (self.hub, self.proxy):
            if process is not None:
                process.stop()
        if self._api is not None:
            self._api.close()
            self._api = None
        if uninstall:
            self.controlplane.helm("uninstall", self.release, "-n", self.namespace, check=False, timeout=120)
            self.controlplane.kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)

    # -- materialising a pod ----------------------------------------------------------------------

    def _kube(self) -> Any:
        """One admin ApiClient for the harness's own reads (closed by stop())."""
        if self._api is None:
            self._api = self.controlplane.api_client()
        return self._api

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._kube())

    def _deployment(self, component: str) -> dict[str, Any]:
        """The release's Deployment of ``component`` (hub, proxy), as a manifest dict."""
        from kubernetes import client

        found = client.AppsV1Api(self._kube()).list_namespaced_deployment(
            self.namespace, label_selector=f"component={component},release={self.release}"
        )
        (deployment,) = found.items
        return self._kube().sanitize_for_serialization(deployment)

    def _pod_templates(self) -> dict[str, Any]:
        return {c: self._deployment(c)["spec"]["template"] for c in ("hub", "proxy")}

    def _read_names(self) -> None:
        """The resource names the chart published in the ConfigMap (``hub``, ``proxy-api``, ...)."""
        volumes = self._deployment("hub")["spec"]["template"]["spec"]["volumes"]
        configmap = next(v["configMap"]["name"] for v in volumes if v["name"] == "config")
        data = self._read("configmap", configmap)
        self.names = {key: data[key].decode() for key in ("hub", "proxy-api", "proxy-public")}

    def _read(self, kind: str, name: str) -> dict[str, bytes]:
        core = self._core()
        if kind == "secret":
            obj = core.read_namespaced_secret(name, self.namespace)
            return {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}
        obj = core.read_namespaced_config_map(name, self.namespace)
        data = {k: v.encode() for k, v in (obj.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.binary_data or {}).items()})
        return data

    def _service_env(self) -> dict[str, str]:
        """What the kubelet injects: the Kubernetes API Service, and hub/proxy-api/proxy-public
        with their ports replaced by the free ports the processes listen on."""
        server = httpx.URL(self.controlplane.server)
        env = service_links("kubernetes", str(server.host), [("https", int(server.port or 443), "TCP")])
        listen = {
            self.names["hub"]: self.hub_port,
            self.names["proxy-api"]: self.proxy_api_port,
            self.names["proxy-public"]: self.proxy_public_port,
        }
        for service, port in listen.items():
            obj = self._core().read_namespaced_service(service, self.namespace)
            ports = [(p.name, port, p.protocol or "TCP") for p in obj.spec.ports]
            env.update(service_links(service, self.host_ip, ports[:1]))
        return env

    def _hosts(self, hostname: str) -> Path:
        path = self.workdir / f"hosts-{hostname}"
        path.write_text(
            hosts_file(self.namespace, list(self.names.values()), self.host_ip, self.host_ip, hostname)
        )
        return path

    def _service_account(self, pod_spec: Mapping[str, Any], pod: str) -> list[Mount]:
        if pod_spec.get("automountServiceAccountToken") is False:
            return []
        account = pod_spec.get("serviceAccountName") or "default"
        request = self._core().create_namespaced_service_account_token(
            account, self.namespace, {"spec": {"expirationSeconds": 86400}}
        )
        token = request.status.token
        if account == self.names.get("hub"):
            self.sa_token = token
        root_ca = self._read("configmap", "kube-root-ca.crt")["ca.crt"]
        dest = self.workdir / f"{pod}-serviceaccount"
        _write_volume(
            dest,
            {"token": token.encode(), "ca.crt": root_ca, "namespace": self.namespace.encode()},
            None,
        )
        return [Mount(dest, SERVICE_ACCOUNT_DIR, read_only=True)]

    def _materialise(self, component: str) -> tuple[dict[str, Any], list[Mount], dict[str, str], str]:
        """(container, mounts, env, pod name) of the Deployment's first container."""
        deployment = self._deployment(component)
        pod_spec = deployment["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        pod = f"{deployment['metadata']['name']}-z2jh-harness"
        secrets: dict[str, dict[str, str]] = {}
        configmaps: dict[str, dict[str, str]] = {}
        volume_dirs: dict[str, Path] = {}
        for volume in pod_spec.get("volumes") or ():
            dest = self.workdir / f"{pod}-volumes" / volume["name"]
            if "configMap" in volume:
                data = self._read("configmap", volume["configMap"]["name"])
                configmaps[volume["configMap"]["name"]] = {k: v.decode() for k, v in data.items()}
                _write_volume(dest, data, volume["configMap"].get("items"))
            elif "secret" in volume:
                data = self._read("secret", volume["secret"]["secretName"])
                secrets[volume["secret"]["secretName"]] = {k: v.decode() for k, v in data.items()}
                _write_volume(dest, data, volume["secret"].get("items"))
            elif "persistentVolumeClaim" in volume or "emptyDir" in volume:
                dest.mkdir(parents=True, exist_ok=True)  # kept across restarts: the hub's database
            else:
                raise ValueError(f"{component}: unsupported volume {volume}")
            volume_dirs[volume["name"]] = dest
        for item in container.get("env") or ():
            ref = item.get("valueFrom", {})
            for kind, key, store in (
                ("secret", "secretKeyRef", secrets),
                ("configmap", "configMapKeyRef", configmaps),
            ):
                if key in ref and ref[key]["name"] not in store:
                    store[ref[key]["name"]] = {
                        k: v.decode() for k, v in self._read(kind, ref[key]["name"]).items()
                    }
        mounts: list[Mount] = []
        for vm in container.get("volumeMounts") or ():
            volume = next(v for v in pod_spec["volumes"] if v["name"] == vm["name"])
            read_only = vm.get("readOnly", False) or "configMap" in volume or "secret" in volume
            source = volume_dirs[vm["name"]] / vm.get("subPath", "")
            mounts.append(Mount(source, vm["mountPath"].rstrip("/") or "/", read_only))
        mounts += self._service_account(pod_spec, pod)
        mounts.append(Mount(self._hosts(pod), "/etc/hosts", read_only=True))
        fields = {
            "metadata.namespace": self.namespace,
            "metadata.name": pod,
            "spec.nodeName": self.controlplane.node_name,
            "spec.serviceAccountName": pod_spec.get("serviceAccountName") or "default",
            "status.podIP": self.host_ip,
            "status.hostIP": self.host_ip,
        }
        home = self.workdir / f"{pod}-home"
        home.mkdir(exist_ok=True)
        base = {
            "PATH": SYSTEM_PATH,
            "HOME": str(home),
            "HOSTNAME": pod,
            "LANG": "C.UTF-8",
            "KUBECONFIG": os.devnull,  # no fallback to anyone's kubeconfig: in-cluster config or nothing
            **self._service_env(),
        }
        env = resolve_env(container, base=base, fields=fields, secrets=secrets, configmaps=configmaps)
        return container, mounts, env, pod

    def _proxy_process(self) -> _PodProcess:
        container, mounts, env, _ = self._materialise("proxy")
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        new_port = {
            ports.get("http", 8000): self.proxy_public_port,
            ports.get("api", 8001): self.proxy_api_port,
        }
        argv = [expand(a, env) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
        argv = [rewrite_port(arg, new_port) for arg in argv]
        node = shutil.which("node")
        env["PATH"] = os.pathsep.join(
            [str(NODE_BIN), *([str(Path(node).parent)] if node else []), env["PATH"]]
        )
        return _PodProcess("proxy", self.workdir, argv, env, mounts, cwd="/")

    def _hub_process(self) -> _PodProcess:
        container, mounts, env, _ = self._materialise("hub")
        config_d = self.workdir / "hub-jupyterhub_config.d"
        config_d.mkdir(exist_ok=True)
        (config_d / "zz-harness-ports.py").write_text(hub_port_override(8081, self.hub_port))
        mounts.append(Mount(config_d, "/usr/local/etc/jupyterhub/jupyterhub_config.d", read_only=True))
        argv = [expand(a, env) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
        env["PATH"] = f"{self.venv.bin}{os.pathsep}{env['PATH']}"
        workdir = next((m.target for m in mounts if m.target == "/srv/jupyterhub"), "/srv/jupyterhub")
        return _PodProcess("hub", self.workdir, argv, env, mounts, cwd=workdir)

    def _hub_readiness_path(self) -> str:
        container = self._deployment("hub")["spec"]["template"]["spec"]["containers"][0]
        probe = container.get("readinessProbe") or {}
        return probe.get("httpGet", {}).get("path") or f"{self.base_url}hub/health"


def rewrite_port(arg: str, new_port: Mapping[int, int]) -> str:
    """``--port=8000`` / ``--api-port=8001`` -> the free port standing in for that container port."""
    flag, sep, value = arg.partition("=")
    if sep and flag in ("--port", "--api-port") and value.isdigit() and int(value) in new_port:
        return f"{flag}={new_port[int(value)]}"
    return arg


def hub_port_override(container_port: int, port: int) -> str:
    """The hub's one deviation from Z2JH's config: the port it listens on (see the docstring)."""
    return f"""# jupyterhub-mcp test harness: the hub shares the host's network namespace, so it listens on a
# free port instead of :{container_port}; the idle culler (if enabled) is pointed at that port too.
c.JupyterHub.hub_bind_url = "http://:{port}"
for _service in c.JupyterHub.services:
    if "command" in _service:
        _service["command"] = [
            arg.replace("//localhost:{container_port}/", "//localhost:{port}/") for arg in _service["command"]
        ]
"""


def start_z2jh(
    controlplane: Any,
    workdir: Path,
    *,
    chart_root: Path,
    venv: HubVenv,
    values: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    release: str = "jhub",
    host_ip: str = "127.0.0.1",
) -> Z2JH:
    """Install the chart into a fresh namespace and start its hub and proxy; stop() undoes it all."""
    z2jh = Z2JH(
        controlplane=controlplane,
        workdir=workdir,
        namespace=namespace or f"z2jh-{uuid.uuid4().hex[:8]}",
        release=release,
        chart=chart_dir(chart_root),
        venv=venv,
        values=deep_merge(harness_values(), values or {}),
        host_ip=host_ip,
    )
    try:
        z2jh.install()
        z2jh.start()
    except BaseException as error:
        logs = z2jh.logs()
        z2jh.stop()
        if isinstance(error, Exception):
            raise RuntimeError(f"Z2JH did not come up: {error}\n{logs}") from error
        raise
    return z2jh


@contextlib.contextmanager
def running_z2jh(controlplane: Any, workdir: Path, **kwargs: Any) -> Iterator[Z2JH]:
    z2jh = start_z2jh(controlplane, workdir, **kwargs)
    try:
        yield z2jh
    finally:
        z2jh.stop()
