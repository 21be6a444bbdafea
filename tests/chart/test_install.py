"""The chart installed with the real `helm` into the real test control plane (etcd + kube-apiserver
with RBAC and admission webhooks on): CRD established, webhook registered with the chart's CA and
actually called by the API server over TLS, CA kept across `helm upgrade`, the operator's
ServiceAccount allowed exactly what the operator needs and nothing else, and the real operator,
running as that ServiceAccount with the Deployment's configuration, doing its whole job.

There is no cluster network here, so the webhook is registered by URL (`webhook.url`, the value for
an operator outside the cluster) on 127.0.0.1 with the chart-generated certificate.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from mcp_operator import endpoint

from tests.harness.chart import CHART, NAMESPACED, flatten, service_account_kubeconfig
from tests.harness.gatewayapi import install_gateway_api
from tests.harness.paths import VENV_BIN, free_port

pytestmark = pytest.mark.controlplane

RELEASE = "jupyterhub-mcp"
CRD = "mcppolicies.mcp.jupyterhub.org"
# Every authenticated identity may review itself; not part of what the chart grants.
SELF_REVIEWS = {
    ("authentication.k8s.io", "selfsubjectreviews", "create"),
    ("authorization.k8s.io", "selfsubjectaccessreviews", "create"),
    ("authorization.k8s.io", "selfsubjectrulesreviews", "create"),
}


@dataclass
class Release:
    namespace: str
    webhook_port: int
    values: list[str] = field(default_factory=list)

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{RELEASE}"

    @property
    def webhook_configuration(self) -> str:
        return f"{RELEASE}-{self.namespace}"


def wait_until(what: str, probe, timeout: float = 60.0):
    """Poll until `probe()` is truthy and return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def get_json(controlplane, *args: str) -> dict:
    return json.loads(controlplane.kubectl("get", *args, "-o", "json"))


@pytest.fixture(scope="module")
def release(controlplane) -> Iterator[Release]:
    namespace = f"chart-{uuid.uuid4().hex[:8]}"
    rel = Release(namespace, free_port())
    rel.values = [
        "--set",
        f"webhook.url=https://127.0.0.1:{rel.webhook_port}/mutate-pod",
        "--set",
        "webhook.extraCertHosts={127.0.0.1}",
        "--set",
        "defaultPolicy.enabled=true",
    ]
    controlplane.kubectl("create", "namespace", namespace)
    try:
        controlplane.helm("install", RELEASE, str(CHART), "-n", namespace, *rel.values)
        yield rel
    finally:
        controlplane.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s", check=False)
        controlplane.kubectl("delete", "namespace", namespace, "--wait=false")


def tls_secret(controlplane, release: Release) -> dict[str, bytes]:
    secret = get_json(controlplane, "secret", "-n", release.namespace, f"{RELEASE}-webhook-tls")
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def test_crd_is_established_and_accepts_the_default_policy(controlplane, release):
    controlplane.wait_crd_established(CRD, timeout=60)
    crd = get_json(controlplane, "crd", CRD)
    assert crd["spec"]["group"] == "mcp.jupyterhub.org"
    policy = get_json(controlplane, "mcppolicy", "-n", release.namespace, "default")
    # The chart's spec survived the CRD's structural pruning, and the CRD filled in its defaults.
    assert policy["spec"]["selection"]["users"] == ["*"]
    assert policy["spec"]["sidecar"]["image"] == "ghcr.io/jupyterhub-mcp/sidecar:0.1.0"
    assert policy["spec"]["tools"]["mode"] == "execute"
    assert policy["spec"]["sidecar"]["port"] == 8890


def test_webhook_configuration_carries_the_chart_ca(controlplane, release):
    configuration = get_json(controlplane, "mutatingwebhookconfiguration", release.webhook_configuration)
    (webhook,) = configuration["webhooks"]
    tls = tls_secret(controlplane, release)
    assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == tls["ca.crt"]
    x509.load_pem_x509_certificate(tls["tls.crt"]).verify_directly_issued_by(
        x509.load_pem_x509_certificate(tls["ca.crt"])
    )
    assert webhook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": release.namespace}}


def test_default_install_registers_the_service_and_uninstall_cleans_the_cluster(controlplane):
    """Default values (the in-cluster Service), in a namespace of its own; `helm uninstall` leaves no
    cluster-scoped object behind (only the CRD, which Helm never deletes)."""
    namespace = f"chart-default-{uuid.uuid4().hex[:6]}"
    cluster_name = f"{RELEASE}-{namespace}"
    controlplane.kubectl("create", "namespace", namespace)
    try:
        controlplane.helm("install", RELEASE, str(CHART), "-n", namespace)
        (webhook,) = get_json(controlplane, "mutatingwebhookconfiguration", cluster_name)["webhooks"]
        assert webhook["clientConfig"]["service"] == {
            "name": f"{RELEASE}-webhook",
            "namespace": namespace,
            "path": "/mutate-pod",
            "port": 443,
        }
        ca = get_json(controlplane, "secret", "-n", namespace, f"{RELEASE}-webhook-tls")["data"]["ca.crt"]
        assert webhook["clientConfig"]["caBundle"] == ca
        deployment = get_json(controlplane, "deployment", "-n", namespace, RELEASE)
        assert deployment["spec"]["replicas"] == 1
        controlplane.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")
        left = controlplane.kubectl(
            "get", "mutatingwebhookconfiguration,clusterrole,clusterrolebinding", "-o", "name"
        )
        assert cluster_name not in left
        controlplane.wait_crd_established(CRD, timeout=60)
    finally:
        controlplane.helm("uninstall", RELEASE, "-n", namespace, check=False)
        controlplane.kubectl("delete", "namespace", namespace, "--wait=false")


class AdmissionRecorder(BaseHTTPRequestHandler):
    """Stands in for the operator's webhook endpoint (this test is about the chart's registration
    and TLS, not the operator): records each AdmissionReview and marks the pod with an annotation."""

    seen: list[dict]

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "request": review["request"]})
        patch = [{"op": "add", "path": "/metadata/annotations", "value": {"chart-test/admitted": "yes"}}]
        body = json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": True,
                    "patchType": "JSONPatch",
                    "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def webhook_endpoint(controlplane, release, tmp_path) -> Iterator[list[dict]]:
    """An HTTPS endpoint on the URL the chart registered, serving the chart-generated certificate."""
    tls = tls_secret(controlplane, release)
    (tmp_path / "tls.crt").write_bytes(tls["tls.crt"])
    (tmp_path / "tls.key").write_bytes(tls["tls.key"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    seen: list[dict] = []
    handler = type("Recorder", (AdmissionRecorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", release.webhook_port), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def pod_manifest(
    name: str,
    namespace: str,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """A pod shaped like KubeSpawner's: a `notebook` container with its `notebook-port`."""
    notebook = {
        "name": "notebook",
        "image": "quay.io/jupyter/base-notebook",
        "ports": [{"name": "notebook-port", "containerPort": 8888}],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "annotations": annotations or {},
            },
            "spec": {"automountServiceAccountToken": False, "containers": [notebook]},
        }
    )


def create_pod(
    controlplane,
    name: str,
    namespace: str,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    # The ServiceAccount admission plugin needs the namespace's `default` ServiceAccount, which the
    # controller-manager creates shortly after the namespace.
    wait_until(
        f"default ServiceAccount in {namespace}",
        lambda: controlplane.kubectl(
            "get", "serviceaccount", "default", "-n", namespace, "--ignore-not-found", "-o", "name"
        ).strip(),
    )
    return json.loads(
        controlplane.kubectl(
            "create", "-f", "-", "-o", "json", input=pod_manifest(name, namespace, labels, annotations, env)
        )
    )


def test_api_server_calls_the_webhook_over_the_chart_tls_for_user_pods_only(
    controlplane, release, webhook_endpoint
):
    user_labels = {"component": "singleuser-server"}
    user_pod = create_pod(controlplane, "jupyter-alice", release.namespace, user_labels)
    assert user_pod["metadata"]["annotations"] == {"chart-test/admitted": "yes"}
    # The API server passes timeoutSeconds along as ?timeout=5s.
    assert [
        (s["path"], s["request"]["operation"], s["request"]["object"]["metadata"]["name"])
        for s in webhook_endpoint
    ] == [("/mutate-pod?timeout=5s", "CREATE", "jupyter-alice")]

    # objectSelector: the hub, the proxy and every other pod never meet the webhook.
    hub_pod = create_pod(controlplane, "hub", release.namespace, {"component": "hub"})
    assert "annotations" not in hub_pod["metadata"]
    # namespaceSelector: user pods of other namespaces are not ours.
    elsewhere = f"other-{uuid.uuid4().hex[:8]}"
    controlplane.kubectl("create", "namespace", elsewhere)
    try:
        other_pod = create_pod(controlplane, "jupyter-bob", elsewhere, user_labels)
        assert "annotations" not in other_pod["metadata"]
    finally:
        controlplane.kubectl("delete", "namespace", elsewhere, "--wait=false")
    assert len(webhook_endpoint) == 1


def rules_review(controlplane, release: Release, namespace: str) -> set[tuple[str, str, str]]:
    """What the ServiceAccount may do in `namespace`, as the API server's RBAC authorizer says."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }
    answer = json.loads(
        controlplane.kubectl(
            "create",
            "-f",
            "-",
            "-o",
            "json",
            "--validate=false",
            f"--as={release.service_account}",
            input=json.dumps(review),
        )
    )
    assert answer["status"]["incomplete"] is False
    return {
        (group, resource, verb)
        for rule in answer["status"]["resourceRules"]
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    } - SELF_REVIEWS


def test_service_account_has_exactly_the_operators_permissions(controlplane, release):
    assert rules_review(controlplane, release, release.namespace) == flatten(NAMESPACED)
    # In any other namespace: nothing (no cluster-wide grant at all).
    assert rules_review(controlplane, release, "default") == set()


def can_i(controlplane, release: Release, *args: str) -> bool:
    answer = controlplane.kubectl("auth", "can-i", f"--as={release.service_account}", *args, check=False)
    return answer.strip() == "yes"


def test_every_needed_verb_is_allowed(controlplane, release):
    # `kubectl auth can-i` resolves resources through discovery: HTTPRoutes (route mode gateway)
    # exist only with the Gateway API's CRDs.
    install_gateway_api(controlplane)
    denied = [
        (verb, resource, group)
        for group, resource, verbs in NAMESPACED
        for verb in verbs
        if not can_i(
            controlplane,
            release,
            verb,
            f"{resource.split('/')[0]}.{group}".rstrip("."),
            *(["--subresource", resource.split("/")[1]] if "/" in resource else []),
            "-n",
            release.namespace,
        )
    ]
    assert denied == []


@pytest.mark.parametrize(
    "request_args",
    [
        ("create", "clusterrolebindings"),
        ("get", "secrets", "-n", "default"),
        ("list", "pods", "-n", "kube-system"),
        ("create", "pods", "-n", "{ns}"),
        ("patch", "pods", "-n", "{ns}"),
        ("delete", "mcppolicies.mcp.jupyterhub.org", "-n", "{ns}"),
        ("update", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("get", "customresourcedefinitions.apiextensions.k8s.io", "mcppolicies.mcp.jupyterhub.org"),
        ("delete", "namespaces"),
        # What kopf's cluster scanning would need; it is off, so neither is granted.
        ("list", "namespaces"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "serviceaccounts", "--subresource", "token", "-n", "{ns}"),
        ("bind", "roles.rbac.authorization.k8s.io", "-n", "{ns}"),
        ("patch", "events", "-n", "{ns}"),
        ("get", "services", "-n", "{ns}"),
        ("update", "mcppolicies.mcp.jupyterhub.org", "-n", "{ns}"),
    ],
)
def test_forbidden_calls_are_denied(controlplane, release, request_args):
    args = [arg.format(ns=release.namespace) for arg in request_args]
    assert not can_i(controlplane, release, *args)


def test_upgrade_keeps_the_ca_and_applies_new_values(controlplane, release):
    before = tls_secret(controlplane, release)
    controlplane.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        release.namespace,
        *release.values,
        "--set",
        "webhook.timeoutSeconds=7",
    )
    after = tls_secret(controlplane, release)
    assert after == before
    configuration = get_json(controlplane, "mutatingwebhookconfiguration", release.webhook_configuration)
    (webhook,) = configuration["webhooks"]
    assert webhook["timeoutSeconds"] == 7
    assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == before["ca.crt"]
    history = controlplane.helm("history", RELEASE, "-n", release.namespace, "-o", "json")
    assert [entry["status"] for entry in json.loads(history)] == ["superseded", "deployed"]


def operator_command(
    controlplane, release: Release, tmp_path: Path, health_port: int
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the operator container as the installed Deployment says, adapted to a
    process on this machine: TLS files from the chart's Secret, loopback listeners, the SA kubeconfig.
    secretKeyRef variables are resolved from their Secrets, as the kubelet would."""
    deployment = get_json(controlplane, "deployment", "-n", release.namespace, RELEASE)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            found = controlplane.kubectl(
                "get", "secret", ref["name"], "-n", release.namespace, "--ignore-not-found", "-o", "json"
            )
            data = json.loads(found)["data"] if found.strip() else {}
            if ref["key"] in data:
                env[var["name"]] = base64.b64decode(data[ref["key"]]).decode()
            else:  # as the kubelet does: an optional one is left out, a required one stops the pod
                assert ref.get("optional"), f"Secret {ref['name']} key {ref['key']} is missing"
    env["MCP_OPERATOR_NAMESPACE"] = release.namespace  # the Deployment's fieldRef
    tls = tls_secret(controlplane, release)
    env["MCP_WEBHOOK_TLS_CERT"] = str(tmp_path / "tls.crt")
    env["MCP_WEBHOOK_TLS_KEY"] = str(tmp_path / "tls.key")
    (tmp_path / "tls.crt").write_bytes(tls["tls.crt"])
    (tmp_path / "tls.key").write_bytes(tls["tls.key"])
    env["MCP_WEBHOOK_PORT"] = str(release.webhook_port)
    env["MCP_HEALTH_PORT"] = str(health_port)
    env["KUBECONFIG"] = str(
        service_account_kubeconfig(controlplane, release.namespace, RELEASE, tmp_path / "sa.kubeconfig")
    )
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    # No `command` in the Deployment: the image's ENTRYPOINT, the console script, runs the args.
    assert "command" not in container
    argv = [
        str(VENV_BIN / "jupyterhub-mcp-operator"),
        *container["args"],
        "--webhook-host",
        "127.0.0.1",
        "--health-host",
        "127.0.0.1",
    ]
    return argv, {**keep, "HOME": str(tmp_path), **env}


@pytest.fixture
def hub_registered(controlplane, release, jupyterhub) -> Iterator[None]:
    """Step 1 of NOTES.txt, done as it says: the hub service token in a Secret, then `helm upgrade
    --reuse-values` pointing the chart at it (and at the hub); the default policy now issues tokens."""
    controlplane.kubectl(
        "create",
        "secret",
        "generic",
        "jupyterhub-mcp-hub-token",
        "-n",
        release.namespace,
        "--from-file=token=/dev/stdin",
        input=jupyterhub.service_token,
    )
    controlplane.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        release.namespace,
        "--reuse-values",
        "--set",
        "hub.serviceToken.existingSecret=jupyterhub-mcp-hub-token",
        "--set",
        f"hub.apiUrl={jupyterhub.api_url}",
        "--set",
        "defaultPolicy.spec.tokens.issue=true",
        # every kind of child (and its RBAC) in play: the Ingress of route mode ingress
        "--set",
        "route.mode=ingress",
    )
    yield


@pytest.fixture
def operator_process(controlplane, release, hub_registered, tmp_path) -> Iterator[dict]:
    health_port = free_port()
    argv, env = operator_command(controlplane, release, tmp_path, health_port)
    assert env["JUPYTERHUB_API_TOKEN"], "the chart did not pass the hub service token"
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"operator exited ({process.returncode}):\n{log_path.read_text()}")
            try:
                return httpx.get(f"http://127.0.0.1:{health_port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("operator /readyz", ready, timeout=90)
        yield {"process": process, "log": log_path, "kubeconfig": Path(env["KUBECONFIG"])}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.mark.hub
def test_operator_as_the_chart_service_account_does_its_whole_job(
    controlplane, release, jupyterhub, operator_process
):
    """The real operator, authenticated as the chart's ServiceAccount and configured from the chart's
    Deployment, injects a user pod through the chart's webhook registration, wires its Service,
    Ingress and NetworkPolicy, mints the user's token from the real hub into a Secret, updates the
    policy status and posts Events: the chart's RBAC, env and TLS are sufficient. The same
    credentials are refused outside the namespace: they are not more."""
    ns, user, pod_name = release.namespace, "bob", "jupyter-bob"
    log = operator_process["log"]
    # What KubeSpawner puts on a user pod (the hub URL and the server's token, which the sidecar reuses).
    hub_env = {
        "JUPYTERHUB_API_URL": jupyterhub.api_url,
        "JUPYTERHUB_API_TOKEN": "server-token",
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVICE_PREFIX": endpoint.server_prefix(user),
    }
    pod = create_pod(
        controlplane,
        pod_name,
        ns,
        {"component": "singleuser-server", "hub.jupyter.org/username": user},
        annotations={"hub.jupyter.org/username": user},
        env=hub_env,
    )
    annotations = pod["metadata"].get("annotations", {})
    assert annotations.get("mcp.jupyterhub.org/injected", "").startswith("default/"), log.read_text()
    spec = pod["spec"]
    containers = spec["containers"] + spec.get("initContainers", [])
    sidecars = [c for c in containers if c["image"] == "ghcr.io/jupyterhub-mcp/sidecar:0.1.0"]
    assert len(sidecars) == 1, containers

    def wired() -> bool:
        names = controlplane.kubectl("get", "service,ingress,networkpolicy", "-n", ns, "-o", "name")
        return all(
            f"{kind}/{pod_name}-mcp" in names
            for kind in ("service", "ingress.networking.k8s.io", "networkpolicy.networking.k8s.io")
        )

    wait_until(f"Service, Ingress and NetworkPolicy {pod_name}-mcp", wired, timeout=90)

    def token_secret() -> dict | None:
        found = controlplane.kubectl(
            "get", "secret", f"mcp-token-{user}", "-n", ns, "--ignore-not-found", "-o", "json"
        )
        return json.loads(found) if found.strip() else None

    secret = wait_until(f"Secret mcp-token-{user}", token_secret, timeout=90)
    assert [ref["name"] for ref in secret["metadata"]["ownerReferences"]] == [pod_name]
    minted = base64.b64decode(secret["data"]["token"]).decode()
    who = httpx.get(f"{jupyterhub.api_url}/user", headers={"Authorization": f"token {minted}"}, timeout=10)
    assert who.status_code == 200 and who.json()["name"] == user

    def status_counts() -> bool:
        status = get_json(controlplane, "mcppolicy", "-n", ns, "default").get("status") or {}
        return status.get("injected", 0) >= 1

    wait_until("MCPPolicy default status.injected", status_counts, timeout=90)

    def event_posted() -> bool:
        events = get_json(
            controlplane, "events", "-n", ns, "--field-selector", f"involvedObject.name={pod_name}"
        )["items"]
        return any(e["reason"] == "MCPWired" for e in events)

    wait_until("MCPWired event on the pod", event_posted, timeout=60)

    # A policy change that turns the route off: the operator deletes the Ingress it made.
    controlplane.kubectl(
        "patch",
        "mcppolicy",
        "default",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec": {"route": {"enabled": false}}}',
    )
    wait_until(
        f"Ingress {pod_name}-mcp deleted",
        lambda: (
            not controlplane.kubectl(
                "get", "ingress", f"{pod_name}-mcp", "-n", ns, "--ignore-not-found", "-o", "name"
            ).strip()
        ),
        timeout=90,
    )

    # The user's server goes away: the token is revoked at the hub and its Secret released.
    controlplane.kubectl("delete", "pod", pod_name, "-n", ns, "--wait=false")
    wait_until(f"Secret mcp-token-{user} gone", lambda: token_secret() is None, timeout=90)
    revoked = httpx.get(
        f"{jupyterhub.api_url}/user", headers={"Authorization": f"token {minted}"}, timeout=10
    )
    assert revoked.status_code == 403
    text = log.read_text()
    assert "Forbidden" not in text and " 403" not in text, text
    assert "Not enough permissions" not in text, text  # kopf's cluster scanning stays off

    # The operator's own credentials, one step outside its namespace: refused.
    outside = subprocess.run(
        [
            str(controlplane.bin_dir / "kubectl"),
            f"--kubeconfig={operator_process['kubeconfig']}",
            "get",
            "secrets",
            "-n",
            "default",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert outside.returncode != 0 and "Forbidden" in outside.stderr, outside.stderr
