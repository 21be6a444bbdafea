"""The test node agent (tests/harness/nodeagent.py) on the real control plane, with real processes in
real network namespaces: what the Z2JH tier relies on it for."""

from __future__ import annotations

import base64
import http.server
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.harness.nodeagent import (
    NODE_NAME,
    STATE_DIR,
    NodeAgent,
    Program,
    clean_leftovers,
    expand,
    field_path_value,
    hosts_file,
    image_repository,
    resolve_program,
    resource_field_value,
    write_atomic,
)
from tests.harness.paths import REPO, VENV_BIN, eventually

pytestmark = [pytest.mark.z2jh, pytest.mark.controlplane, pytest.mark.timeout(300)]

WAIT = 60.0
WEB = ["python", "-m", "http.server", "8080", "--bind", "0.0.0.0"]
HTTP = httpx.Client(trust_env=False, timeout=5)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def container(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "example.org/test/whatever:1", "command": command, **extra}


def http_probe(port: int, path: str = "/", period: int = 1, failures: int = 3) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures}


def make_pod(agent: NodeAgent, name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {**agent.pod_fields(), "containers": containers, **spec},
    }


@pytest.fixture
def core(kube_api: Any) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


def read(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_pod(
    agent: NodeAgent,
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    what: str,
    check: Callable[[dict[str, Any]], Any],
    timeout: float = WAIT,
) -> dict[str, Any]:
    """Until ``check(pod)`` holds; the failure names the pod's status and its container logs."""

    def probe() -> dict[str, Any] | None:
        agent.check_alive()
        pod = read(core, namespace, name)
        return pod if pod is not None and check(pod) else None

    try:
        return eventually(f"{namespace}/{name}: {what}", probe, timeout=timeout)
    except AssertionError as e:
        pod = read(core, namespace, name)
        raise AssertionError(
            f"{e}\nstatus: {(pod or {}).get('status')}\n{agent.logs(namespace, name)}"
        ) from None


def condition(pod: dict[str, Any], kind: str) -> str | None:
    return next((c["status"] for c in pod["status"].get("conditions") or () if c["type"] == kind), None)


def is_ready(pod: dict[str, Any]) -> bool:
    return condition(pod, "Ready") == "True"


def statuses(pod: dict[str, Any], key: str = "containerStatuses") -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in pod["status"].get(key) or ()}


def run_ready(
    agent: NodeAgent, core: client.CoreV1Api, namespace: str, pod: dict[str, Any]
) -> dict[str, Any]:
    core.create_namespaced_pod(namespace, pod)
    return wait_pod(agent, core, namespace, pod["metadata"]["name"], "Ready", is_ready)


def exec_ok(agent: NodeAgent, namespace: str, pod: str, container: str, argv: list[str]) -> str:
    result = agent.exec(namespace, pod, container, argv)
    assert result.returncode == 0, f"{argv}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def fetch(url: str, headers: dict[str, str] | None = None) -> list[str]:
    """argv for a host Python that GETs ``url`` and prints the status and body."""
    code = (
        "import urllib.request as u; "
        f"r = u.urlopen(u.Request({url!r}, headers={headers or {}!r}), timeout=5); "
        "print(r.status, r.read().decode())"
    )
    return [sys.executable, "-I", "-c", code]


@pytest.fixture
def host_server(node_agent: NodeAgent) -> Iterator[str]:
    """A web server on the agent's host IP (where the hub and CHP listen in the tier)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"host sees {self.client_address[0]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((node_agent.host_ip, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------
# pure parts
# ---------------------------------------------------------------------------------------------


def test_the_program_table_maps_commands_and_images() -> None:
    table = [
        Program("/venv/singleuser", command="jupyterhub-singleuser"),
        Program("/venv/sidecar", image="jupyterhub-mcp/sidecar"),
        Program("/usr/bin/py", command="python"),
    ]
    assert resolve_program(
        [], ["jupyterhub-singleuser", "--debug"], "quay.io/jupyterhub/k8s-singleuser-sample:4", table
    ) == [
        "/venv/singleuser",
        "--debug",
    ]
    assert resolve_program([], [], "registry.example.org:5000/jupyterhub-mcp/sidecar:test", table) == [
        "/venv/sidecar"
    ]
    assert resolve_program(["/usr/local/bin/python", "-m", "x"], [], "any", table) == [
        "/usr/bin/py",
        "-m",
        "x",
    ]
    assert (
        resolve_program(["/opt/thing"], [], "jupyterhub-mcp/sidecar:1", table) is None
    )  # a command wins over the image
    assert image_repository("r:5000/a/b:t@sha256:00") == "r:5000/a/b"


def test_kubelet_expansion_and_files() -> None:
    assert expand("$(A)-$(B)-$$(A)-$(MISSING)", {"A": "1", "B": "2"}) == "1-2-$(A)-$(MISSING)"
    text = hosts_file(
        "10.213.0.5", "web", None, {"hub": "10.213.0.1"}, [{"ip": "1.2.3.4", "hostnames": ["x", "y"]}]
    )
    assert "10.213.0.5\tweb\n" in text and "10.213.0.1\thub\n" in text and "1.2.3.4\tx\ty\n" in text


def test_downward_api_values() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"b": "2", "a": "1"}},
        "spec": {"nodeName": NODE_NAME, "serviceAccountName": "sa"},
        "status": {"podIP": "10.213.0.9", "podIPs": [{"ip": "10.213.0.9"}], "hostIP": "10.213.0.1"},
    }
    assert field_path_value(pod, "metadata.labels['a']") == "1"
    assert field_path_value(pod, "metadata.labels") == 'a="1"\nb="2"'
    assert (
        field_path_value(pod, "status.podIPs") == "10.213.0.9"
        and field_path_value(pod, "spec.nodeName") == NODE_NAME
    )
    limits = {"resources": {"limits": {"memory": "1Gi", "cpu": "500m"}}}
    assert resource_field_value(limits, {"resource": "limits.memory", "divisor": "1Mi"}, {}) == "1024"
    assert (
        resource_field_value(limits, {"resource": "limits.cpu"}, {}) == "1"
    )  # rounded up, as the kubelet does
    assert resource_field_value({}, {"resource": "limits.cpu"}, {"cpu": "32"}) == "32"  # node allocatable


def test_volume_files_are_swapped_atomically(tmp_path: Path) -> None:
    write_atomic(tmp_path, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert (tmp_path / "a").read_text() == "1" and (tmp_path / "dir" / "b").read_text() == "2"
    write_atomic(tmp_path, {"a": (b"3", 0o644)})
    assert (tmp_path / "a").read_text() == "3" and not (tmp_path / "dir").exists()
    assert (
        len([p for p in tmp_path.iterdir() if p.name.startswith("..") and p.is_dir() and not p.is_symlink()])
        == 1
    )


# ---------------------------------------------------------------------------------------------
# the node
# ---------------------------------------------------------------------------------------------


def test_the_node_is_registered_ready_and_only_tolerating_pods_land_on_it(
    node_agent: NodeAgent, core: client.CoreV1Api, kube_api: Any, k8s_namespace: str
) -> None:
    node = core.read_node(NODE_NAME)
    assert node.metadata.labels["kubernetes.io/hostname"] == NODE_NAME
    assert node.metadata.labels["hub.jupyter.org/node-purpose"] == "user"
    assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})
    cidr = ipaddress.ip_network(node.spec.pod_cidr)
    assert cidr == node_agent.network and ipaddress.ip_address(node_agent.host_ip) in cidr
    assert not cidr.overlaps(ipaddress.ip_network("10.244.0.0/16"))
    assert not cidr.overlaps(ipaddress.ip_network("10.96.0.0/16"))
    lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(NODE_NAME, "kube-node-lease")
    first = lease.spec.renew_time

    def renewed_and_ready() -> bool:
        lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(NODE_NAME, "kube-node-lease")
        ready = [c for c in core.read_node(NODE_NAME).status.conditions if c.type == "Ready"]
        return lease.spec.renew_time > first and ready[0].status == "True"

    eventually("the node's Lease renewed, node still Ready", renewed_and_ready, timeout=30)
    # A pod without the toleration goes elsewhere (kwok's node): other tiers' pods never land here.
    plain = {"metadata": {"name": "elsewhere"}, "spec": {"containers": [container("c", WEB)]}}
    core.create_namespaced_pod(k8s_namespace, plain)
    bound = eventually(
        "the plain pod scheduled", lambda: core.read_namespaced_pod("elsewhere", k8s_namespace).spec.node_name
    )
    assert bound != NODE_NAME


# ---------------------------------------------------------------------------------------------
# pods
# ---------------------------------------------------------------------------------------------


def test_a_web_pod_becomes_ready_with_an_ip_of_the_cidr_and_answers_from_the_host(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str
) -> None:
    pod = make_pod(
        node_agent,
        "web",
        [container("web", WEB, ports=[{"containerPort": 8080}], readinessProbe=http_probe(8080))],
    )
    ready = run_ready(node_agent, core, k8s_namespace, pod)
    status = ready["status"]
    assert status["phase"] == "Running"
    assert ipaddress.ip_address(status["podIP"]) in node_agent.network
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == node_agent.host_ip
    assert {c["type"]: c["status"] for c in status["conditions"]}.items() >= {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }.items()
    web = statuses(ready)["web"]
    assert web["ready"] and web["started"] and "running" in web["state"] and web["restartCount"] == 0
    assert HTTP.get(f"http://{status['podIP']}:8080/").status_code == 200
    assert (node_agent.workdir / "logs" / k8s_namespace / "web" / "web.log").exists()


def test_pods_reach_each_other_and_the_host_by_the_names_in_their_hosts_file(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str, host_server: str
) -> None:
    a = run_ready(
        node_agent,
        core,
        k8s_namespace,
        make_pod(node_agent, "a", [container("web", WEB, readinessProbe=http_probe(8080))]),
    )
    b = run_ready(
        node_agent,
        core,
        k8s_namespace,
        make_pod(node_agent, "b", [container("web", WEB, readinessProbe=http_probe(8080))]),
    )
    a_ip, b_ip = a["status"]["podIP"], b["status"]["podIP"]
    assert a_ip != b_ip
    for name in ("hub", "proxy-api", "proxy-public"):
        assert (
            exec_ok(node_agent, k8s_namespace, "a", "web", ["getent", "hosts", name]).split()[0]
            == node_agent.host_ip
        )
    assert exec_ok(node_agent, k8s_namespace, "a", "web", ["getent", "hosts", "a"]).split()[0] == a_ip
    assert exec_ok(node_agent, k8s_namespace, "a", "web", ["hostname"]).strip() == "a"
    # pod -> host, by name; the host sees the pod's own address (no NAT)
    assert (
        exec_ok(node_agent, k8s_namespace, "a", "web", fetch(f"http://hub:{host_server}/")).strip()
        == f"200 host sees {a_ip}"
    )
    # pod -> pod, and pod -> itself on loopback
    assert exec_ok(node_agent, k8s_namespace, "b", "web", fetch(f"http://{a_ip}:8080/")).startswith("200")
    assert exec_ok(node_agent, k8s_namespace, "a", "web", fetch("http://127.0.0.1:8080/")).startswith("200")
    # names added later reach running pods too
    node_agent.set_hosts({"later.example": b_ip})
    assert (
        exec_ok(node_agent, k8s_namespace, "a", "web", ["getent", "hosts", "later.example"]).split()[0]
        == b_ip
    )


def test_secrets_configmaps_the_token_and_env_are_where_the_pod_expects_them(
    node_agent: NodeAgent, core: client.CoreV1Api, kube_api: Any, controlplane: Any, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret", "user": "ann"}}
    )
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "conf"}, "data": {"app.ini": "[app]\nx = 1\n", "mode": "fast"}}
    )
    web = container(
        "web",
        WEB,
        readinessProbe=http_probe(8080),
        env=[
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "mode"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "GREETING", "value": "hello $(POD_NAME)"},
            {"name": "NOPE", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        ],
        volumeMounts=[
            {"name": "creds", "mountPath": "/etc/nodeagent-test/creds", "readOnly": True},
            {"name": "conf", "mountPath": "/etc/nodeagent-test/app.ini", "subPath": "app.ini"},
            {"name": "scratch", "mountPath": "/tmp"},
            {"name": "info", "mountPath": "/etc/nodeagent-test/info"},
        ],
    )
    pod = make_pod(
        node_agent,
        "vols",
        [web],
        volumes=[
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "conf", "configMap": {"name": "conf"}},
            {"name": "scratch", "emptyDir": {}},
            {
                "name": "info",
                "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
            },
        ],
    )
    ready = run_ready(node_agent, core, ns, pod)
    sh = lambda *argv: exec_ok(node_agent, ns, "vols", "web", list(argv))  # noqa: E731

    assert sh("cat", "/etc/nodeagent-test/creds/password") == "s3cret"
    assert sh("cat", "/etc/nodeagent-test/app.ini") == "[app]\nx = 1\n"
    assert sh("cat", "/etc/nodeagent-test/info/labels") == 'app="vols"'
    assert (
        node_agent.exec(ns, "vols", "web", ["touch", "/etc/nodeagent-test/creds/x"]).returncode != 0
    )  # read-only
    sh("touch", "/tmp/only-in-the-pod")
    assert not Path("/tmp/only-in-the-pod").exists()
    # Nothing of it on the host: the mount points there are empty (the binds live in the pod's mounts).
    assert os.listdir("/etc/nodeagent-test/creds") == []
    # The ServiceAccount admission plugin's projected volume: a real bound token, the CA, the namespace.
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    token = sh("cat", f"{sa}/token")
    assert sh("cat", f"{sa}/namespace") == ns
    assert sh("cat", f"{sa}/ca.crt").encode() == controlplane.ca_pem
    review = client.AuthenticationV1Api(kube_api).create_token_review({"spec": {"token": token}})
    assert review.status.authenticated, review.status.error
    assert review.status.user.username == f"system:serviceaccount:{ns}:default"
    assert review.status.user.extra["authentication.kubernetes.io/pod-name"] == ["vols"]
    # The container's environment, as the kubelet resolves it.
    pid = node_agent.container_pid(ns, "vols", "web")
    env = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e)
    assert env["PASSWORD"] == "s3cret" and env["MODE"] == "fast" and env["POD_NAME"] == "vols"
    assert env["POD_IP"] == ready["status"]["podIP"] and env["GREETING"] == "hello vols" and "NOPE" not in env
    # A changed Secret reaches the mounted file (the kubelet's resync), not a subPath-free stale copy.
    core.patch_namespaced_secret("creds", ns, {"data": {"password": base64.b64encode(b"rotated").decode()}})
    eventually(
        "the rotated secret in the pod",
        lambda: sh("cat", "/etc/nodeagent-test/creds/password") == "rotated",
        timeout=30,
    )


def test_a_secret_created_after_the_pod_is_picked_up_as_by_the_kubelet(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str
) -> None:
    """The operator's token Secret is mounted ``optional`` and minted after the pod starts; an env
    ``secretKeyRef`` to a missing Secret holds the container (CreateContainerConfigError) until it exists."""
    ns = k8s_namespace
    web = container(
        "web",
        WEB,
        readinessProbe=http_probe(8080),
        env=[{"name": "LATE", "valueFrom": {"secretKeyRef": {"name": "late-env", "key": "v"}}}],
        volumeMounts=[{"name": "token", "mountPath": "/etc/nodeagent-test/token", "readOnly": True}],
    )
    volumes = [{"name": "token", "secret": {"secretName": "late-token", "optional": True}}]
    core.create_namespaced_pod(ns, make_pod(node_agent, "late", [web], volumes=volumes))

    def config_error(p: dict[str, Any]) -> bool:
        waiting = statuses(p).get("web", {}).get("state", {}).get("waiting", {})
        return waiting.get("reason") == "CreateContainerConfigError" and "late-env" in waiting.get(
            "message", ""
        )

    wait_pod(node_agent, core, ns, "late", "held by the missing env Secret", config_error)
    core.create_namespaced_secret(ns, {"metadata": {"name": "late-env"}, "stringData": {"v": "here"}})
    wait_pod(node_agent, core, ns, "late", "Ready", is_ready)
    pid = node_agent.container_pid(ns, "late", "web")
    assert "LATE=here" in Path(f"/proc/{pid}/environ").read_text().split("\0")
    assert exec_ok(node_agent, ns, "late", "web", ["ls", "/etc/nodeagent-test/token"]) == ""  # ..data only
    core.create_namespaced_secret(ns, {"metadata": {"name": "late-token"}, "stringData": {"token": "minted"}})
    eventually(
        "the minted token in the running pod",
        lambda: (
            node_agent.exec(ns, "late", "web", ["cat", "/etc/nodeagent-test/token/token"]).stdout == "minted"
        ),
        timeout=30,
    )


def test_a_native_sidecar_starts_first_and_the_main_container_waits_for_its_startup_probe(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    shared = [{"name": "shared", "mountPath": "/shared"}]
    init = container("prepare", ["sh", "-c", "echo prepared > /shared/marker"], volumeMounts=shared)
    sidecar = container(
        "sidecar",
        ["sh", "-c", "sleep 3; exec python -m http.server 8081 --bind 0.0.0.0"],
        restartPolicy="Always",
        startupProbe=http_probe(8081, failures=30),
        readinessProbe=http_probe(8081),
        volumeMounts=shared,
    )
    main = container("main", WEB, readinessProbe=http_probe(8080), volumeMounts=shared)
    pod = make_pod(
        node_agent,
        "side",
        [main],
        initContainers=[init, sidecar],
        volumes=[{"name": "shared", "emptyDir": {}}],
    )
    ready = run_ready(node_agent, core, ns, pod)

    events = [(c, w) for c, w in node_agent.events_of(ns, "side") if c != "-"]
    order = [
        ("prepare", "started"),
        ("prepare", "exited 0"),
        ("sidecar", "started"),
        ("sidecar", "started probe passed"),
        ("main", "started"),
    ]
    assert [e for e in events if e in order] == order, events
    times = {(c, w): t for t, n, p, c, w in node_agent.events if n == ns and p == "side"}
    assert times[("main", "started")] - times[("sidecar", "started")] >= 2.5  # it waited for the probe
    inits = statuses(ready, "initContainerStatuses")
    assert inits["prepare"]["state"]["terminated"]["exitCode"] == 0
    assert inits["prepare"]["state"]["terminated"]["reason"] == "Completed"
    assert (
        inits["sidecar"]["started"] and inits["sidecar"]["ready"] and "running" in inits["sidecar"]["state"]
    )
    main_started = statuses(ready)["main"]["state"]["running"]["startedAt"]
    assert main_started >= inits["sidecar"]["state"]["running"]["startedAt"]
    assert exec_ok(node_agent, ns, "side", "main", ["cat", "/shared/marker"]) == "prepared\n"
    # The sidecar reaches the main container on the pod's loopback, as in a pod.
    assert exec_ok(node_agent, ns, "side", "sidecar", fetch("http://127.0.0.1:8080/")).startswith("200")


def test_a_failing_readiness_probe_keeps_the_pod_unready(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str
) -> None:
    pod = make_pod(
        node_agent,
        "unready",
        [container("web", WEB, readinessProbe=http_probe(8080, "/no-such-page", failures=1))],
    )
    core.create_namespaced_pod(k8s_namespace, pod)
    wait_pod(
        node_agent,
        core,
        k8s_namespace,
        "unready",
        "Running, started",
        lambda p: p["status"].get("phase") == "Running" and statuses(p)["web"]["started"],
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        current = read(core, k8s_namespace, "unready")
        assert current is not None
        assert condition(current, "Ready") == "False" and condition(current, "ContainersReady") == "False"
        assert statuses(current)["web"]["ready"] is False and "running" in statuses(current)["web"]["state"]
        time.sleep(0.5)
    assert HTTP.get(f"http://{current['status']['podIP']}:8080/no-such-page").status_code == 404


def test_an_exiting_container_is_restarted_with_backoff_and_reported(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str
) -> None:
    pod = make_pod(node_agent, "crash", [container("c", ["sh", "-c", "echo boom; exit 3"])])
    core.create_namespaced_pod(k8s_namespace, pod)
    crashed = wait_pod(
        node_agent,
        core,
        k8s_namespace,
        "crash",
        "restarted twice",
        lambda p: statuses(p).get("c", {}).get("restartCount", 0) >= 2,
    )
    c = statuses(crashed)["c"]
    assert c["lastState"]["terminated"]["exitCode"] == 3 and c["lastState"]["terminated"]["reason"] == "Error"
    assert condition(crashed, "Ready") == "False"
    assert "boom" in (node_agent.workdir / "logs" / k8s_namespace / "crash" / "c.log").read_text()
    # restartPolicy Never: the pod ends Failed, once.
    never = make_pod(node_agent, "once", [container("c", ["sh", "-c", "exit 4"])], restartPolicy="Never")
    core.create_namespaced_pod(k8s_namespace, never)
    failed = wait_pod(
        node_agent, core, k8s_namespace, "once", "Failed", lambda p: p["status"].get("phase") == "Failed"
    )
    assert (
        statuses(failed)["c"]["state"]["terminated"]["exitCode"] == 4
        and statuses(failed)["c"]["restartCount"] == 0
    )


def test_tcp_and_exec_probes_and_a_failing_liveness_probe_restarts_the_container(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str
) -> None:
    web = container(
        "web",
        WEB,
        readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        # exec probes run in the container's own view: its /tmp is the emptyDir, where nothing is
        livenessProbe={
            "exec": {"command": ["sh", "-c", "test -e /tmp/alive"]},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
        volumeMounts=[{"name": "scratch", "mountPath": "/tmp"}],
    )
    pod = make_pod(node_agent, "probed", [web], volumes=[{"name": "scratch", "emptyDir": {}}])
    core.create_namespaced_pod(k8s_namespace, pod)
    restarted = wait_pod(
        node_agent,
        core,
        k8s_namespace,
        "probed",
        "restarted by its liveness probe",
        lambda p: statuses(p).get("web", {}).get("restartCount", 0) >= 1,
    )
    assert restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137
    assert ("web", "liveness probe failed: killing") in node_agent.events_of(k8s_namespace, "probed")
    assert ("web", "ready") in node_agent.events_of(k8s_namespace, "probed")  # the tcpSocket probe passed


def test_deleting_a_pod_stops_its_processes_and_removes_its_namespace_veth_and_object(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str
) -> None:
    stubborn = container("stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"])
    pod = make_pod(node_agent, "doomed", [container("web", WEB, readinessProbe=http_probe(8080)), stubborn])
    run_ready(node_agent, core, k8s_namespace, pod)
    runner = node_agent.runner(k8s_namespace, "doomed")
    assert runner is not None
    netns, veth, pod_dir = runner.netns, runner.host_veth, runner.dir
    pids = [
        int(p)
        for p in subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    ]
    assert len(pids) >= 2 and pod_dir.exists() and Path("/etc/netns", netns).exists()

    started = time.monotonic()
    core.delete_namespaced_pod("doomed", k8s_namespace)  # grace 30 s, capped by the fixture to 3 s
    eventually("the pod object gone", lambda: read(core, k8s_namespace, "doomed") is None, timeout=WAIT)
    took = time.monotonic() - started
    assert 2.5 <= took < 20, (
        f"{took:.1f} s: the stubborn container should have been SIGKILLed after the grace"
    )
    assert not [
        p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    netns_list = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns not in netns_list.split()
    assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0
    assert not pod_dir.exists() and not Path("/etc/netns", netns).exists()
    assert node_agent.runner(k8s_namespace, "doomed") is None


def test_a_container_nothing_maps_is_reported_and_the_agent_carries_on(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str
) -> None:
    pod = make_pod(node_agent, "alien", [container("alien", ["/opt/vendor/bin/thing", "--serve"])])
    core.create_namespaced_pod(k8s_namespace, pod)

    def waiting(p: dict[str, Any]) -> bool:
        return (
            statuses(p).get("alien", {}).get("state", {}).get("waiting", {}).get("reason")
            == "NoProgramForContainer"
        )

    stuck = wait_pod(node_agent, core, k8s_namespace, "alien", "NoProgramForContainer", waiting)
    assert "/opt/vendor/bin/thing" in statuses(stuck)["alien"]["state"]["waiting"]["message"]
    assert stuck["status"]["phase"] == "Pending" and condition(stuck, "Ready") == "False"
    node_agent.check_alive()
    # A row added now applies to a second such pod (and to the stuck one at its next retry).
    row = Program(sys.executable, command="/opt/vendor/bin/web", args=("-m", "http.server"))
    node_agent.add_program(row)
    try:
        later = container("web", ["/opt/vendor/bin/web", "8080"], readinessProbe=http_probe(8080))
        run_ready(node_agent, core, k8s_namespace, make_pod(node_agent, "mapped", [later]))
    finally:
        node_agent.programs.remove(row)  # the table is the session's
    core.delete_namespaced_pod("alien", k8s_namespace)
    eventually("the unmappable pod deleted", lambda: read(core, k8s_namespace, "alien") is None, timeout=WAIT)
    # and the agent still runs pods
    run_ready(
        node_agent,
        core,
        k8s_namespace,
        make_pod(node_agent, "after", [container("web", WEB, readinessProbe=http_probe(8080))]),
    )


USER = "ann"
SERVER_TOKEN = "server-token-of-ann"  # what the hub would put in JUPYTERHUB_API_TOKEN


@pytest.fixture
def fake_hub(node_agent: NodeAgent) -> Iterator[str]:
    """Just enough of the hub API on the agent's host IP for a jupyterhub-singleuser to start and
    accept its own token (the real hub is the Z2JH tier's). Yields the port."""
    import jupyterhub

    user = {
        "kind": "user",
        "name": USER,
        "admin": False,
        "groups": [],
        "session_id": None,
        "scopes": [
            f"access:servers!server={USER}/",
            f"access:servers!user={USER}",
            f"users:activity!user={USER}",
        ],
    }

    class Hub(http.server.BaseHTTPRequestHandler):
        def answer(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/hub/api":
                self.answer(200, {"version": jupyterhub.__version__})
            elif self.path.startswith("/hub/api/user"):
                auth = self.headers.get("Authorization", "")
                ok = auth in (f"token {SERVER_TOKEN}", f"Bearer {SERVER_TOKEN}")
                self.answer(200, user) if ok else self.answer(403, {"message": "bad token"})
            else:
                self.answer(404, {})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.answer(200, {})

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((node_agent.host_ip, 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield str(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(
    not (VENV_BIN / "jupyterhub-singleuser").exists() or not (VENV_BIN / "jupyterhub-mcp-sidecar").exists(),
    reason="the venv lacks jupyterhub-singleuser or jupyterhub-mcp-sidecar",
)
def test_the_mcp_sidecar_reaches_jupyterhub_singleuser_on_the_pods_loopback(
    node_agent: NodeAgent, core: client.CoreV1Api, k8s_namespace: str, fake_hub: str
) -> None:
    """A KubeSpawner-shaped notebook container (args ``jupyterhub-singleuser``, an image that cannot
    run here) and the webhook-shaped native sidecar (no command: mapped by its image)."""
    prefix = f"/user/{USER}/"
    hub_env = [
        {"name": "JUPYTERHUB_API_TOKEN", "value": SERVER_TOKEN},
        {"name": "JUPYTERHUB_API_URL", "value": f"http://hub:{fake_hub}/hub/api"},
        {"name": "JUPYTERHUB_ACTIVITY_URL", "value": f"http://hub:{fake_hub}/hub/api/users/{USER}/activity"},
        {"name": "JUPYTERHUB_USER", "value": USER},
        {"name": "JUPYTERHUB_SERVICE_PREFIX", "value": prefix},
    ]
    notebook = {
        "name": "notebook",
        "image": "quay.io/jupyterhub/k8s-singleuser-sample:4.0.0",
        "args": ["jupyterhub-singleuser"],
        "ports": [{"name": "notebook-port", "containerPort": 8888}],
        "env": [
            *hub_env,
            {"name": "JUPYTERHUB_CLIENT_ID", "value": f"jupyterhub-user-{USER}"},
            {"name": "JUPYTERHUB_BASE_URL", "value": "/"},
            {"name": "JUPYTERHUB_SERVER_NAME", "value": ""},
            {"name": "JUPYTERHUB_SERVICE_URL", "value": f"http://0.0.0.0:8888{prefix}"},
            {"name": "JUPYTERHUB_OAUTH_CALLBACK_URL", "value": f"{prefix}oauth_callback"},
            {"name": "JUPYTERHUB_HOST", "value": ""},
            {
                "name": "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
                "value": json.dumps([f"access:servers!server={USER}/"]),
            },
        ],
    }
    sidecar = {
        "name": "mcp-sidecar",
        "image": "registry.example.org/jupyterhub-mcp/sidecar:test",
        "restartPolicy": "Always",
        "ports": [{"name": "mcp", "containerPort": 8890}],
        "env": [
            *hub_env,
            {"name": "JUPYTER_SERVER_URL", "value": "http://127.0.0.1:8888"},
            {"name": "MCP_PORT", "value": "8890"},
            {"name": "MCP_TOKEN", "value": "static-test-token"},
            {"name": "MCP_AUDIT_LOG", "value": "off"},
        ],
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": 8890},
            "periodSeconds": 1,
            "failureThreshold": 60,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": 8890},
            "periodSeconds": 2,
            "failureThreshold": 1,
        },
        "volumeMounts": [{"name": "mcp-sidecar-tmp", "mountPath": "/tmp"}],
    }
    pod = make_pod(
        node_agent,
        f"jupyter-{USER}",
        [notebook],
        initContainers=[sidecar],
        volumes=[{"name": "mcp-sidecar-tmp", "emptyDir": {}}],
    )
    core.create_namespaced_pod(k8s_namespace, pod)
    ready = wait_pod(node_agent, core, k8s_namespace, f"jupyter-{USER}", "Ready", is_ready, timeout=120)
    ip = ready["status"]["podIP"]
    # The sidecar's /readyz is an authenticated call to Jupyter at 127.0.0.1:8888 in the pod.
    answer = HTTP.get(f"http://{ip}:8890/readyz")
    assert answer.status_code == 200 and answer.json()["ready"] is True, answer.text
    # And Jupyter is at 127.0.0.1:8888 inside the namespace only as the pod's own loopback.
    url = f"http://127.0.0.1:8888{prefix}api/status"
    token = {"Authorization": f"token {SERVER_TOKEN}"}
    status = exec_ok(node_agent, k8s_namespace, f"jupyter-{USER}", "mcp-sidecar", fetch(url, token))
    assert status.startswith("200")


def test_what_a_crashed_agent_left_is_removed_and_live_agents_are_left_alone(
    node_agent: NodeAgent, tmp_path: Path
) -> None:
    code = (
        "import subprocess, sys, time\n"
        "from pathlib import Path\n"
        "from tests.harness.nodeagent import NodeAgent\n"
        "agent = NodeAgent(Path('/dev/null'), Path(sys.argv[1]))\n"
        "agent._setup_network()\n"
        "subprocess.run(['ip', 'netns', 'add', f'z2jh-{agent.id}-1'], check=True)\n"
        "print(agent.id, agent.bridge, flush=True)\n"
        "time.sleep(120)\n"
    )
    crashing = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert crashing.stdout is not None
        agent_id, bridge = crashing.stdout.readline().split()
    finally:
        crashing.kill()  # no teardown: what a crash leaves
        crashing.wait()
    assert bridge in links() and f"z2jh-{agent_id}-1" in netns_names()
    removed = clean_leftovers()
    assert f"netns z2jh-{agent_id}-1" in removed and f"link {bridge}" in removed
    assert bridge not in links() and f"z2jh-{agent_id}-1" not in netns_names()
    assert not (STATE_DIR / f"{agent_id}.json").exists()
    # The session's own agent is alive: nothing of it went.
    assert node_agent.bridge in links() and (STATE_DIR / f"{node_agent.id}.json").exists()
    node_agent.check_alive()


def links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()]


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]
