"""Proof that the test control plane is real: each test fails against a fake or partial one.

CRDs are served and validated, the scheduler + kwok move a KubeSpawner-shaped pod to Running, the
garbage collector removes children of a deleted pod, the API server calls a mutating webhook served
here over HTTPS (cert from the test CA), RBAC denies a service account without permissions, /version
reports the pinned release, and helm installs a chart.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.controlplane import ControlPlane, read_versions
from tests.fixtures.tools import eventually, free_port

pytestmark = pytest.mark.controlplane

WAIT = 60.0  # seconds; generous for a loaded two-core machine


wait_until = partial(eventually, timeout=WAIT)


def kubespawner_pod(username: str = "alice") -> dict:
    """A pod shaped like the ones KubeSpawner creates (what the operator's webhook will see)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"jupyter-{username}",
            "labels": {
                "component": "singleuser-server",
                "app": "jupyterhub",
                "hub.jupyter.org/username": username,
            },
            "annotations": {"hub.jupyter.org/username": username},
        },
        "spec": {
            "containers": [
                {
                    "name": "notebook",
                    "image": "quay.io/jupyter/base-notebook:latest",
                    "ports": [{"name": "notebook-port", "containerPort": 8888}],
                }
            ]
        },
    }


def test_crd_served_and_validated(controlplane: ControlPlane, kube_api: Any, k8s_namespace: str) -> None:
    group = f"proof-{uuid.uuid4().hex[:6]}.example.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    # Through kubectl, so the kubeconfig and the unpacked kubectl are proven too.
    controlplane.kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        controlplane.wait_crd_established(f"widgets.{group}", timeout=WAIT)
        custom = client.CustomObjectsApi(kube_api)
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
        }
        custom.create_namespaced_custom_object(group, "v1", k8s_namespace, "widgets", body)
        stored = custom.get_namespaced_custom_object(group, "v1", k8s_namespace, "widgets", "w1")
        assert stored["spec"] == {"size": 3}
        assert stored["metadata"]["uid"]

        # The structural schema is enforced by the API server.
        bad = {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}}
        with pytest.raises(ApiException) as denied:
            custom.create_namespaced_custom_object(group, "v1", k8s_namespace, "widgets", bad)
        assert denied.value.status == 422
        assert "spec.size" in denied.value.body
    finally:
        controlplane.kubectl("delete", "crd", f"widgets.{group}", "--wait=false")


def test_kubespawner_pod_scheduled_and_running(
    kube_api: Any, k8s_namespace: str, controlplane: ControlPlane
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(k8s_namespace, kubespawner_pod("alice"))

    pod = wait_until(
        "kwok to report the pod Running",
        lambda: (
            (p := core.read_namespaced_pod("jupyter-alice", k8s_namespace)).status.phase == "Running" and p
        ),
    )
    assert pod.spec.node_name == controlplane.node_name  # placed by the real scheduler
    assert pod.status.pod_ip
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready.get("Ready") == "True"
    # Default admission ran: the ServiceAccount plugin mounted a projected token volume.
    assert pod.spec.service_account_name == "default"
    assert any(v.name.startswith("kube-api-access-") for v in pod.spec.volumes)


def test_garbage_collector_removes_children_of_deleted_pod(kube_api: Any, k8s_namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    pod = core.create_namespaced_pod(k8s_namespace, kubespawner_pod("bob"))
    owner = {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "uid": pod.metadata.uid}
    core.create_namespaced_config_map(
        k8s_namespace,
        {"metadata": {"name": "jupyter-bob-mcp", "ownerReferences": [owner]}, "data": {"k": "v"}},
    )
    core.delete_namespaced_pod(pod.metadata.name, k8s_namespace, grace_period_seconds=0)

    def configmap_gone() -> bool:
        try:
            core.read_namespaced_config_map("jupyter-bob-mcp", k8s_namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_until("the garbage collector to delete the owned ConfigMap", configmap_gone)


class _WebhookRecorder:
    """An HTTPS admission webhook on 127.0.0.1 that labels pods and records every review it gets."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.reviews: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recorder.reviews.append(review)
                patch = [{"op": "add", "path": "/metadata/labels/proof.webhook~1mutated", "value": "yes"}]
                answer = {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "response": {
                        "uid": review["request"]["uid"],
                        "allowed": True,
                        "patchType": "JSONPatch",
                        "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                    },
                }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _WebhookRecorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(controlplane: ControlPlane, tmp_path: Any) -> Iterator[_WebhookRecorder]:
    cert, key = controlplane.sign_serving_cert(["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    with _WebhookRecorder(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")) as recorder:
        yield recorder


def test_api_server_calls_mutating_webhook(
    controlplane: ControlPlane, kube_api: Any, k8s_namespace: str, webhook: _WebhookRecorder
) -> None:
    admission = client.AdmissionregistrationV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    name = f"proof-{k8s_namespace}"
    admission.create_mutating_webhook_configuration(
        {
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "proof.webhook.example.test",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{webhook.port}/mutate-pod",
                        "caBundle": controlplane.ca_bundle_b64,
                    },
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                        }
                    ],
                    # Only this test's namespace and KubeSpawner pods, like the operator's registration.
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": k8s_namespace}},
                    "objectSelector": {"matchLabels": {"component": "singleuser-server"}},
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 10,
                }
            ],
        }
    )
    try:
        # The API server picks up new webhook configurations asynchronously: probe with dry runs
        # (webhooks with sideEffects None are called for them too) until the patch shows up.
        def dry_run_is_patched() -> bool:
            probe = core.create_namespaced_pod(k8s_namespace, kubespawner_pod("probe"), dry_run="All")
            return (probe.metadata.labels or {}).get("proof.webhook/mutated") == "yes"

        wait_until("the API server to start calling the webhook", dry_run_is_patched)

        stored = core.create_namespaced_pod(k8s_namespace, kubespawner_pod("carol"))
        assert stored.metadata.labels["proof.webhook/mutated"] == "yes"
        assert core.read_namespaced_pod("jupyter-carol", k8s_namespace).metadata.labels[
            "proof.webhook/mutated"
        ]

        request = webhook.reviews[-1]["request"]
        assert request["operation"] == "CREATE"
        assert request["namespace"] == k8s_namespace
        assert request["object"]["metadata"]["annotations"]["hub.jupyter.org/username"] == "carol"
        assert request["userInfo"]["username"] == "test-admin"

        # objectSelector is honoured: a pod that is not a user server is not sent to the webhook.
        calls = len(webhook.reviews)
        other = kubespawner_pod("dave")
        other["metadata"]["labels"]["component"] = "something-else"
        created = core.create_namespaced_pod(k8s_namespace, other)
        assert "proof.webhook/mutated" not in created.metadata.labels
        assert len(webhook.reviews) == calls
    finally:
        admission.delete_mutating_webhook_configuration(name)


def test_rbac_denies_service_account_without_permissions(
    controlplane: ControlPlane, kube_api: Any, k8s_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(k8s_namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", k8s_namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token

    config = client.Configuration()
    config.host = controlplane.server
    config.ssl_ca_cert = str(controlplane.workdir / "pki" / "ca.crt")
    config.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(config) as as_nobody:
        # Authentication works (the token is real and signed by the API server's key) ...
        review = client.AuthenticationV1Api(as_nobody).create_self_subject_review({})
        assert review.status.user_info.username == f"system:serviceaccount:{k8s_namespace}:nobody"
        # ... but authorization says no.
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(as_nobody).list_namespaced_secret(k8s_namespace)
        assert denied.value.status == 403
        assert "forbidden" in denied.value.body.lower()

        # Granting a Role makes the same call succeed: RBAC decides, not a blanket deny.
        rbac = client.RbacAuthorizationV1Api(kube_api)
        rbac.create_namespaced_role(
            k8s_namespace,
            {
                "metadata": {"name": "read-secrets"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            k8s_namespace,
            {
                "metadata": {"name": "nobody-reads-secrets"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets"},
                "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": k8s_namespace}],
            },
        )

        def allowed_now() -> bool:
            try:
                return client.CoreV1Api(as_nobody).list_namespaced_secret(k8s_namespace) is not None
            except ApiException as exc:
                if exc.status != 403:
                    raise
                return False  # the authorizer's informer has not seen the binding yet

        wait_until("the new RoleBinding to take effect", allowed_now)


def test_version_is_the_pinned_release(kube_api: Any) -> None:
    # The operator decides on native sidecars from this; an unstamped build would say v0.0.0-master.
    info = client.VersionApi(kube_api).get_code()
    assert info.git_version == read_versions()["K8S_VERSION"]
    assert (info.major, info.minor) == ("1", read_versions()["K8S_VERSION"].split(".")[1])


def test_helm_installs_a_chart(
    controlplane: ControlPlane, kube_api: Any, k8s_namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "proof-chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: proof-chart\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    controlplane.helm("install", "proof", str(chart), "-n", k8s_namespace, "--set", "greeting=from-test")

    cm = client.CoreV1Api(kube_api).read_namespaced_config_map("proof-cm", k8s_namespace)
    assert cm.data == {"greeting": "from-test"}
    releases = json.loads(controlplane.helm("list", "-n", k8s_namespace, "-o", "json"))
    assert [(r["name"], r["status"]) for r in releases] == [("proof", "deployed")]
