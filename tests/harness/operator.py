"""Runs the real operator (`jupyterhub-mcp-operator`, a subprocess) against the test control plane,
with its webhook on 127.0.0.1 registered through a MutatingWebhookConfiguration the tests own
(the operator never creates one; the chart does). Shared by tests/operator and bench/."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client
from mcp_operator.constants import GROUP, PLURAL, VERSION
from mcp_operator.names import safe_slug

from tests.harness.paths import REPO, VENV_BIN, free_port
from tests.harness.paths import eventually as _poll

WAIT = 120.0  # seconds; generous for a loaded two-core machine
CRD_FILE = REPO / "crds" / "mcppolicy.yaml"
# What the chart passes as MCP_SIDECAR_IMAGE; not the built-in default, so a test sees which applied.
SIDECAR_IMAGE = "registry.example.org/jupyterhub-mcp/sidecar:test"
GOLDEN_POD = REPO / "tests" / "golden" / "injection" / "default-server" / "input.yaml"


eventually = partial(_poll, timeout=WAIT)


def install_crd(controlplane: Any) -> None:
    """The real CRD, server-side applied (replaces a schema-less stand-in another test may have left)."""
    controlplane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    controlplane.wait_crd_established("mcppolicies.mcp.jupyterhub.org", timeout=WAIT)


def user_pod(user: str, server: str = "", *, token_from_secret: bool = False) -> dict[str, Any]:
    """A KubeSpawner-shaped pod (the golden input, re-labelled for `user`), schedulable on kwok's
    fake node: no custom scheduler, no PVC."""
    pod = yaml.safe_load(GOLDEN_POD.read_text())
    slug = safe_slug(user)
    name = f"jupyter-{slug}" + (f"--{safe_slug(server)}" if server else "")
    prefix = f"/user/{user}/" + (f"{server}/" if server else "")
    meta = pod["metadata"]
    meta.pop("uid"), meta.pop("namespace")
    meta["name"] = name
    meta["annotations"] = {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": server}
    meta["labels"].update({"hub.jupyter.org/username": slug, "hub.jupyter.org/servername": server})
    spec = pod["spec"]
    spec.pop("schedulerName")
    spec["volumes"] = [{"name": "home", "emptyDir": {}}]
    values = {
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVER_NAME": server,
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_ACTIVITY_URL": f"http://hub:8081/hub/api/users/{user}/activity",
        "JUPYTERHUB_API_TOKEN": "tok-" + uuid.uuid4().hex,
    }
    for entry in spec["containers"][0]["env"]:
        if entry["name"] in values:
            entry["value"] = values[entry["name"]]
        if token_from_secret and entry["name"] == "JUPYTERHUB_API_TOKEN":
            entry.pop("value")
            entry["valueFrom"] = {"secretKeyRef": {"name": f"{name}-token", "key": "token"}}
    return pod


def policy_object(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MCPPolicy", "metadata": {"name": name}, "spec": spec}


def create_policy(api: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    from kubernetes import client

    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, policy_object(name, spec)
    )


class OperatorProcess:
    """`jupyterhub-mcp-operator` for one namespace, with its serving certificate from the test CA."""

    def __init__(
        self, controlplane: Any, namespace: str, workdir: Path, native_sidecar: str = "auto"
    ) -> None:
        self.controlplane = controlplane
        self.native_sidecar = native_sidecar
        self.namespace = namespace
        self.workdir = workdir
        cert, key = controlplane.sign_serving_cert(["127.0.0.1"])
        self.cert, self.key = workdir / "tls.crt", workdir / "tls.key"
        self.cert.write_bytes(cert)
        self.key.write_bytes(key)
        self.key.chmod(0o600)
        self.webhook_port, self.health_port = free_port(), free_port()
        self.log = workdir / "operator.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        self.env["KUBECONFIG"] = str(controlplane.kubeconfig)
        self.env["MCP_SIDECAR_IMAGE"] = SIDECAR_IMAGE
        # Off here: kwok's pods serve nothing, so every check would end in a Warning Event and a
        # status write some seconds later, inside other tests' measurements. The Z2JH tier, whose
        # pods run, turns it on (--check-reachable).
        self.env["MCP_CHECK_REACHABLE"] = "false"
        self.args: list[str] = []  # added to every start (e.g. --no-webhook for a whole module)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def start(self, extra_args: list[str] | None = None) -> None:
        argv = [
            str(VENV_BIN / "jupyterhub-mcp-operator"),
            f"--namespace={self.namespace}",
            "--webhook-host=127.0.0.1",
            f"--webhook-port={self.webhook_port}",
            f"--tls-cert={self.cert}",
            f"--tls-key={self.key}",
            "--health-host=127.0.0.1",
            f"--health-port={self.health_port}",
            f"--native-sidecar={self.native_sidecar}",
            *self.args,
            *(extra_args or ()),
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.text()[-4000:]
            try:
                return httpx.get(f"{self.health_url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        eventually("the operator to be ready", ready)

    def uninstall(self, deployment: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """`jupyterhub-mcp-operator --uninstall` as the chart's pre-delete hook Job runs it."""
        argv = [
            str(VENV_BIN / "jupyterhub-mcp-operator"),
            "--uninstall",
            f"--namespace={self.namespace}",
            f"--operator-deployment={deployment}",
        ]
        return subprocess.run(argv, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def metrics(self) -> str:
        return httpx.get(f"{self.health_url}/metrics", timeout=10).text

    def webhook_configuration(self) -> dict[str, Any]:
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": f"jupyterhub-mcp-{self.namespace}"},
            "webhooks": [
                {
                    "name": "pods.mcp.jupyterhub.org",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{self.webhook_port}/mutate-pod",
                        "caBundle": self.controlplane.ca_bundle_b64,
                    },
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                            "scope": "Namespaced",
                        }
                    ],
                    "objectSelector": {"matchLabels": {"component": "singleuser-server"}},
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
                    "failurePolicy": "Ignore",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 5,
                }
            ],
        }

    def register_webhook(self, api: client.ApiClient, probe_policy_user: str) -> None:
        """Create the configuration and wait until the API server calls it (it picks configurations
        up asynchronously): dry-run pod creations until one comes back injected."""
        admission = client.AdmissionregistrationV1Api(api)
        admission.create_mutating_webhook_configuration(self.webhook_configuration())
        core = client.CoreV1Api(api)

        def injected() -> bool:
            probe = core.create_namespaced_pod(self.namespace, user_pod(probe_policy_user), dry_run="All")
            return "mcp.jupyterhub.org/injected" in (probe.metadata.annotations or {})

        eventually("the API server to call the webhook", injected)

    @contextlib.contextmanager
    def serving(self, api: client.ApiClient, probe_user: str = "probe-user") -> Iterator[None]:
        """Started with its webhook registered for the block; afterwards unregistered, stopped, its
        namespace deleted and its log's tail printed (pytest shows it for a failure)."""
        self.start()
        try:
            self.register_webhook(api, probe_user)
            yield
        finally:
            try:
                self.unregister_webhook(api)
            finally:
                self.stop()
                client.CoreV1Api(api).delete_namespace(self.namespace, propagation_policy="Background")
                print(f"\n--- operator log tail ---\n{self.text()[-3000:]}")

    def unregister_webhook(self, api: client.ApiClient) -> None:
        client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(
            f"jupyterhub-mcp-{self.namespace}"
        )
