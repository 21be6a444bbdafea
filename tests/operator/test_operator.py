"""The operator against the real control plane (etcd, kube-apiserver, controller-manager,
scheduler, kwok): the real CRD, the real `jupyterhub-mcp-operator` process, its webhook called by
the API server over TLS (test CA), pods asserted as the API server stored them.

One operator and one namespace per module (starting them is the expensive part); tests that stop
or restart the operator leave it running again.
"""

from __future__ import annotations

import base64
import concurrent.futures
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.controlplane import make_ca, sign_cert
from tests.harness.operator import (
    GROUP,
    PLURAL,
    SIDECAR_IMAGE,
    VERSION,
    OperatorProcess,
    eventually,
    install_crd,
    policy_object,
    user_pod,
)

pytestmark = pytest.mark.controlplane

RECONCILE_INTERVAL = 2  # seconds between the operator's periodic passes in this module

EVERYONE = {
    "selection": {"users": ["*"], "excludeUsers": ["admin-*"]},
    "route": {
        "mode": "ingress",
        "ingressClassName": "nginx",
        "host": "hub.example.org",
        "tlsSecretName": "hub-tls",
    },
    "tools": {"mode": "edit"},
}


class Cluster:
    def __init__(self, controlplane: Any, api: client.ApiClient, namespace: str, op: OperatorProcess) -> None:
        self.controlplane, self.api, self.namespace, self.operator = controlplane, api, namespace, op
        self.core = client.CoreV1Api(api)
        self.net = client.NetworkingV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def create_pod(self, pod: dict[str, Any]) -> client.V1Pod:
        return self.core.create_namespaced_pod(self.namespace, pod)

    def pod(self, name: str) -> client.V1Pod:
        return self.core.read_namespaced_pod(name, self.namespace)

    def children(self, pod_name: str) -> dict[str, Any] | None:
        """Service, Ingress, NetworkPolicy of a pod, or None while any is missing."""
        name = f"{pod_name}-mcp"
        try:
            return {
                "Service": self.core.read_namespaced_service(name, self.namespace),
                "Ingress": self.net.read_namespaced_ingress(name, self.namespace),
                "NetworkPolicy": self.net.read_namespaced_network_policy(name, self.namespace),
            }
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def children_left(self, pod_name: str) -> int:
        selector = f"mcp.jupyterhub.org/pod={pod_name}"
        return sum(
            len(listing(self.namespace, label_selector=selector).items)
            for listing in (
                self.core.list_namespaced_service,
                self.net.list_namespaced_ingress,
                self.net.list_namespaced_network_policy,
            )
        )

    def wired(self, pod_name: str) -> dict[str, Any]:
        return eventually(f"the children of {pod_name}", lambda: self.children(pod_name))

    def apply_policy(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = policy_object(name, spec)
        try:
            current = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as e:
            if e.status != 404:
                raise
            return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.custom.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, body
        )

    def policy(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def delete_pod(self, name: str) -> None:
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def events(self, name: str) -> list[client.CoreV1Event]:
        return self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items


@pytest.fixture(scope="module")
def cluster(controlplane: Any, kube_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    install_crd(controlplane)
    namespace = f"op-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": namespace}})
    eventually("the default service account", lambda: core.list_namespaced_service_account(namespace).items)
    op = OperatorProcess(controlplane, namespace, tmp_path_factory.mktemp("operator"))
    op.env["MCP_WEBHOOK_TLS_RELOAD_INTERVAL"] = "1"
    op.env["MCP_RECONCILE_INTERVAL"] = str(RECONCILE_INTERVAL)
    c = Cluster(controlplane, kube_api, namespace, op)
    c.apply_policy("everyone", EVERYONE)
    with op.serving(kube_api):
        yield c


def test_pod_is_injected_and_wired(cluster: Cluster) -> None:
    created = cluster.create_pod(user_pod("alice"))
    stored = cluster.pod("jupyter-alice")
    assert created.metadata.uid == stored.metadata.uid
    assert stored.metadata.annotations["mcp.jupyterhub.org/injected"] == "everyone/1"
    # 1.35 API server: native sidecar, after KubeSpawner's own init container
    names = [c.name for c in stored.spec.init_containers]
    assert names == ["block-cloud-metadata", "mcp-sidecar"]
    sidecar = stored.spec.init_containers[1]
    assert sidecar.restart_policy == "Always"
    # The policy names no image and the CRD defaults none: the operator's MCP_SIDECAR_IMAGE applies.
    assert sidecar.image == SIDECAR_IMAGE
    assert [p.name for p in sidecar.ports] == ["mcp"]
    env = {e.name: e.value for e in sidecar.env}
    assert env["JUPYTERHUB_USER"] == "alice" and env["MCP_MODE"] == "edit"
    assert env["JUPYTERHUB_API_TOKEN"] == next(
        e.value for e in stored.spec.containers[0].env if e.name == "JUPYTERHUB_API_TOKEN"
    )
    assert sidecar.security_context.run_as_non_root and sidecar.security_context.read_only_root_filesystem
    assert [c.name for c in stored.spec.containers] == ["notebook"]

    children = cluster.wired("jupyter-alice")
    for child in children.values():
        (owner,) = child.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("Pod", "jupyter-alice", stored.metadata.uid)
        assert owner.controller and owner.block_owner_deletion
    svc = children["Service"]
    assert all(stored.metadata.labels.get(k) == v for k, v in svc.spec.selector.items())
    # numeric: a named targetPort reaches a native sidecar only from Kubernetes 1.32 on
    assert (svc.spec.ports[0].port, svc.spec.ports[0].target_port) == (8890, 8890)
    ing = children["Ingress"]
    assert ing.spec.ingress_class_name == "nginx" and ing.spec.tls[0].secret_name == "hub-tls"
    rule = ing.spec.rules[0]
    assert rule.host == "hub.example.org"
    assert (rule.http.paths[0].path, rule.http.paths[0].path_type) == ("/user/alice/mcp", "Prefix")
    netpol = children["NetworkPolicy"].spec
    assert netpol.pod_selector.match_labels == svc.spec.selector
    assert netpol.ingress[0].ports[0].port == 8890

    wired_events = eventually(
        "the MCPWired Event", lambda: [e for e in cluster.events("jupyter-alice") if e.reason == "MCPWired"]
    )
    assert "everyone/1" in wired_events[0].message


def test_named_server_email_user_and_secret_token(cluster: Cluster) -> None:
    cluster.create_pod(user_pod("a.b@x.org", "lab", token_from_secret=True))
    pod_name = user_pod("a.b@x.org", "lab")["metadata"]["name"]
    stored = cluster.pod(pod_name)
    sidecar = next(c for c in stored.spec.init_containers if c.name == "mcp-sidecar")
    token = next(e for e in sidecar.env if e.name == "JUPYTERHUB_API_TOKEN")
    assert token.value is None and token.value_from.secret_key_ref.name == f"{pod_name}-token"
    path = cluster.wired(pod_name)["Ingress"].spec.rules[0].http.paths[0]
    # ingress-nginx rejects '.' and '@' in Prefix paths
    assert (path.path, path.path_type) == ("/user/a.b@x.org/lab/mcp", "ImplementationSpecific")


def test_excluded_user_is_untouched(cluster: Cluster) -> None:
    pod = user_pod("admin-eve")
    cluster.create_pod(pod)
    cluster.create_pod(user_pod("bob"))  # created after: once bob is wired, eve has been seen too
    cluster.wired("jupyter-bob")
    stored = cluster.pod("jupyter-admin-eve")
    assert "mcp.jupyterhub.org/injected" not in (stored.metadata.annotations or {})
    assert [c.name for c in stored.spec.init_containers] == ["block-cloud-metadata"]
    assert cluster.children("jupyter-admin-eve") is None
    assert 'mcp_operator_admissions_total{outcome="no-policy"}' in cluster.operator.metrics()


def test_deleted_pod_children_are_collected(cluster: Cluster) -> None:
    cluster.create_pod(user_pod("carol"))
    cluster.wired("jupyter-carol")
    cluster.delete_pod("jupyter-carol")

    eventually("carol's children to be removed", lambda: cluster.children_left("jupyter-carol") == 0)


def test_policy_change_updates_children_of_running_pods(cluster: Cluster) -> None:
    cluster.create_pod(user_pod("dave"))
    cluster.wired("jupyter-dave")
    spec = {**EVERYONE, "route": {**EVERYONE["route"], "host": "mcp.example.org"}}
    generation = cluster.apply_policy("everyone", spec)["metadata"]["generation"]

    def moved() -> bool:
        ing = cluster.net.read_namespaced_ingress("jupyter-dave-mcp", cluster.namespace)
        return ing.spec.rules[0].host == "mcp.example.org"

    eventually("dave's Ingress to move to the new host", moved)
    ing = cluster.net.read_namespaced_ingress("jupyter-dave-mcp", cluster.namespace)
    assert ing.metadata.annotations["mcp.jupyterhub.org/policy-generation"] == str(generation)
    eventually(
        "the ChildrenUpdated Event",
        lambda: any(e.reason == "ChildrenUpdated" for e in cluster.events("everyone")),
    )

    # route off: the Ingress goes, the Service stays
    cluster.apply_policy("everyone", {**spec, "route": {"enabled": False}})

    def no_ingress() -> bool:
        try:
            cluster.net.read_namespaced_ingress("jupyter-dave-mcp", cluster.namespace)
        except ApiException as e:
            return e.status == 404
        return False

    eventually("dave's Ingress to be removed", no_ingress)
    cluster.core.read_namespaced_service("jupyter-dave-mcp", cluster.namespace)
    cluster.apply_policy("everyone", EVERYONE)
    eventually("dave's Ingress back", lambda: cluster.children("jupyter-dave"))


def endpoint_ports(cluster: Cluster, service: str) -> list[int] | None:
    """The ports the EndpointSlice controller published for the Service (None until it has)."""
    slices = (
        client.DiscoveryV1Api(cluster.api)
        .list_namespaced_endpoint_slice(
            cluster.namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        .items
    )
    ports = [p.port for s in slices if s.endpoints for p in s.ports or () if p.port is not None]
    return ports or None


def test_policy_port_change_keeps_running_pods_on_their_port(cluster: Cluster) -> None:
    """A running sidecar keeps the port it was injected with: a policy edit re-renders the
    children of running pods, and they must still point where the sidecar listens."""
    cluster.create_pod(user_pod("judy"))
    cluster.wired("jupyter-judy")
    try:
        generation = cluster.apply_policy("everyone", {**EVERYONE, "sidecar": {"port": 8891}})["metadata"][
            "generation"
        ]

        def rerendered() -> dict[str, Any] | None:
            children = cluster.children("jupyter-judy")
            if children is None or any(
                c.metadata.annotations.get("mcp.jupyterhub.org/policy-generation") != str(generation)
                for c in children.values()
            ):
                return None
            return children

        children = eventually("judy's children re-rendered for the new generation", rerendered)
        port = children["Service"].spec.ports[0]
        assert (port.port, port.target_port) == (8890, 8890)
        assert children["NetworkPolicy"].spec.ingress[0].ports[0].port == 8890
        # the controller-manager's EndpointSlice controller resolves it to the pod's real port
        published = eventually("judy's EndpointSlice", lambda: endpoint_ports(cluster, "jupyter-judy-mcp"))
        assert published == [8890]

        # a pod spawned now gets the new port, and so do its children
        cluster.create_pod(user_pod("kim"))
        sidecar = next(c for c in cluster.pod("jupyter-kim").spec.init_containers if c.name == "mcp-sidecar")
        assert [p.container_port for p in sidecar.ports] == [8891]
        kim = cluster.wired("jupyter-kim")
        assert kim["Service"].spec.ports[0].target_port == 8891
        assert kim["NetworkPolicy"].spec.ingress[0].ports[0].port == 8891
        assert eventually("kim's EndpointSlice", lambda: endpoint_ports(cluster, "jupyter-kim-mcp")) == [8891]
    finally:
        cluster.apply_policy("everyone", EVERYONE)


def test_status_counts_and_printer_columns(cluster: Cluster) -> None:
    cluster.create_pod(user_pod("erin"))
    cluster.wired("jupyter-erin")

    def settled() -> dict[str, Any] | None:
        policy = cluster.policy("everyone")
        status = policy.get("status") or {}
        pods = cluster.core.list_namespaced_pod(
            cluster.namespace, label_selector="component=singleuser-server"
        )
        live = [p for p in pods.items if not p.metadata.deletion_timestamp]
        injected = [p for p in live if "mcp.jupyterhub.org/injected" in (p.metadata.annotations or {})]
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        ok = (
            status.get("observedGeneration") == policy["metadata"]["generation"]
            and status.get("injected") == len(injected) == status.get("ready")
            and ready.get("status") == "True"
        )
        return status if ok else None

    status = eventually("the policy status to count every injected pod", settled)
    assert status["matched"] >= status["injected"] >= 1
    table = cluster.controlplane.kubectl("get", "mcppolicies", "-n", cluster.namespace)
    header = table.splitlines()[0].split()
    assert header[:4] == ["NAME", "USERS", "INJECTED", "READY"] and header[-1] == "AGE"
    assert table.splitlines()[1].split()[3] == "True"


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"tools": {"mode": "root"}}, "spec.tools.mode"),
        ({"execution": {"timeoutSeconds": 900}}, "timeoutSeconds must not exceed maxTimeoutSeconds"),
        ({"tokens": {"ttlSeconds": 600, "rotateBeforeSeconds": 600}}, "rotateBeforeSeconds must be shorter"),
        ({"sidecar": {"port": 80}}, "spec.sidecar.port"),
        ({"sidecar": {"port": 8888}}, "must differ from the notebook port 8888"),
    ],
)
def test_invalid_policy_is_refused_by_the_schema(
    cluster: Cluster, spec: dict[str, Any], complaint: str
) -> None:
    bad = policy_object("bad", spec)
    with pytest.raises(ApiException) as refused:
        cluster.custom.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, bad)
    assert refused.value.status == 422 and complaint in refused.value.body


def test_policy_issuing_tokens_without_a_hub_service_token_says_so(cluster: Cluster) -> None:
    """This operator runs without JUPYTERHUB_API_TOKEN: a policy asking for tokens gets none, and
    its status and Events say why; once it stops asking, the condition goes."""

    def hub_tokens() -> dict[str, Any] | None:
        conditions = (cluster.policy("wants-tokens").get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "HubTokens"), None)

    cluster.apply_policy("wants-tokens", {"selection": {"users": ["nobody-here"]}, "tokens": {"issue": True}})
    try:
        condition = eventually("the HubTokens condition", hub_tokens)
        assert (condition["status"], condition["reason"]) == ("False", "NotConfigured")
        assert "JUPYTERHUB_API_TOKEN" in condition["message"]
        eventually(
            "a HubTokensNotConfigured Warning on the policy",
            lambda: [
                e
                for e in cluster.events("wants-tokens")
                if e.reason == "HubTokensNotConfigured" and e.type == "Warning"
            ],
        )
        cluster.apply_policy(
            "wants-tokens", {"selection": {"users": ["nobody-here"]}, "tokens": {"issue": False}}
        )
        eventually("the HubTokens condition to go", lambda: hub_tokens() is None)
        # the policy controller's own condition is there beside it, and stays
        eventually(
            "the Ready condition",
            lambda: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (cluster.policy("wants-tokens").get("status") or {}).get("conditions") or []
            ),
        )
        assert hub_tokens() is None
    finally:
        cluster.custom.delete_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, PLURAL, "wants-tokens"
        )


def test_restart_converges_without_duplicates(cluster: Cluster) -> None:
    for user in ("frank", "grace"):
        cluster.create_pod(user_pod(user))
    for user in ("frank", "grace"):
        cluster.wired(f"jupyter-{user}")
    cluster.operator.stop()
    try:
        # while it is down: drift (a child deleted by hand) and a policy change
        cluster.core.delete_namespaced_service("jupyter-frank-mcp", cluster.namespace)
        spec = {**EVERYONE, "route": {**EVERYONE["route"], "host": "restart.example.org"}}
        cluster.apply_policy("everyone", spec)
        # failurePolicy Ignore: with the webhook down, users still spawn (without MCP)
        started = time.monotonic()
        cluster.create_pod(user_pod("heidi"))
        assert time.monotonic() - started < 30
        heidi = cluster.pod("jupyter-heidi")
        assert "mcp.jupyterhub.org/injected" not in (heidi.metadata.annotations or {})
    finally:
        cluster.operator.start()

    def converged() -> bool:
        for user in ("frank", "grace"):
            children = cluster.children(f"jupyter-{user}")
            if children is None or children["Ingress"].spec.rules[0].host != "restart.example.org":
                return False
        return True

    eventually("the restarted operator to converge", converged)
    services = cluster.core.list_namespaced_service(
        cluster.namespace, label_selector="app.kubernetes.io/managed-by=jupyterhub-mcp"
    ).items
    owners = [s.metadata.owner_references[0].uid for s in services]
    assert len(owners) == len(set(owners))  # one Service per pod, never two
    assert cluster.children("jupyter-heidi") is None  # never injected: nothing to wire
    cluster.apply_policy("everyone", EVERYONE)


def test_policy_created_while_the_operator_was_down_gets_its_status(cluster: Cluster) -> None:
    """The operator loads every policy before it starts watching, so a policy created while it was
    down looks already known when its first event comes: its status must be written all the same."""
    cluster.operator.stop()
    try:
        created = cluster.apply_policy("late", {"selection": {"users": ["nobody-here"]}})
    finally:
        cluster.operator.start()

    def status() -> dict[str, Any] | None:
        got = cluster.policy("late").get("status") or {}
        ready = next((c for c in got.get("conditions", []) if c["type"] == "Ready"), None)
        return got if got.get("observedGeneration") == created["metadata"]["generation"] and ready else None

    got = eventually("the status of the policy created while the operator was down", status)
    assert (got["matched"], got["injected"], got["ready"]) == (0, 0, 0)
    ready = next(c for c in got["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ChildrenReady")
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, "late")


def test_renewed_webhook_certificate_is_served_without_a_restart(cluster: Cluster) -> None:
    """cert-manager renews the serving certificate (here: from a new CA) and updates the caBundle;
    the running operator picks the new files up and the API server keeps reaching it."""
    op = cluster.operator
    assert op.proc is not None
    pid = op.proc.pid
    admission = client.AdmissionregistrationV1Api(cluster.api)
    configuration = f"jupyterhub-mcp-{cluster.namespace}"
    url = f"https://127.0.0.1:{op.webhook_port}/mutate-pod"

    def set_ca_bundle(ca_pem: bytes) -> None:
        value = base64.b64encode(ca_pem).decode()
        patch = [{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": value}]
        admission.patch_mutating_webhook_configuration(configuration, patch)

    def served(ca_pem: bytes) -> bool:
        try:
            httpx.post(url, json={}, verify=ssl.create_default_context(cadata=ca_pem.decode()), timeout=5)
        except httpx.ConnectError:  # the certificate does not verify
            return False
        return True

    def injects() -> bool:
        probe = cluster.core.create_namespaced_pod(cluster.namespace, user_pod("renewal"), dry_run="All")
        return "mcp.jupyterhub.org/injected" in (probe.metadata.annotations or {})

    original = op.cert.read_bytes(), op.key.read_bytes()
    ca_pem, ca_key = make_ca("renewed-webhook-ca")
    cert, key = sign_cert(ca_pem, ca_key, "127.0.0.1", hosts=["127.0.0.1"], server=True)
    try:
        op.cert.write_bytes(cert)
        op.key.write_bytes(key)
        set_ca_bundle(ca_pem)
        eventually("the operator to serve the renewed certificate", lambda: served(ca_pem))
        assert not served(cluster.controlplane.ca_pem)
        eventually("the API server to inject through the renewed certificate", injects)
        assert op.proc is not None and op.proc.pid == pid  # no restart
        assert "webhook TLS certificate reloaded" in op.text()
    finally:
        op.cert.write_bytes(original[0])
        op.key.write_bytes(original[1])
        set_ca_bundle(cluster.controlplane.ca_pem)
        eventually("the original certificate back", lambda: served(cluster.controlplane.ca_pem))
        eventually("injection with the original certificate", injects)


def test_thirty_pods_at_once(cluster: Cluster) -> None:
    users = [f"student-{i:02d}" for i in range(30)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda u: cluster.create_pod(user_pod(u)), users))

    def all_wired() -> bool:
        return all(cluster.children(f"jupyter-{u}") is not None for u in users)

    eventually("30 pods wired", all_wired, every=1.0)
    elapsed = time.monotonic() - started
    print(f"\n30 pods created and wired in {elapsed:.1f} s")
    for u in users:
        stored = cluster.pod(f"jupyter-{u}")
        assert sum(c.name == "mcp-sidecar" for c in stored.spec.init_containers) == 1


def test_without_native_sidecars_the_sidecar_follows_the_notebook(
    controlplane: Any, kube_api: Any, cluster: Cluster, tmp_path: Any
) -> None:
    """`--native-sidecar=false` (clusters before 1.29): a regular container AFTER `notebook`."""
    namespace = f"op-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": namespace}})
    op = OperatorProcess(controlplane, namespace, tmp_path, native_sidecar="false")
    try:
        client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, policy_object("everyone", {})
        )
        op.start()
        op.register_webhook(kube_api, "probe-user")
        core.create_namespaced_pod(namespace, user_pod("ivan"))
        stored = core.read_namespaced_pod("jupyter-ivan", namespace)
        assert [c.name for c in stored.spec.containers] == ["notebook", "mcp-sidecar"]
        assert stored.spec.containers[1].restart_policy is None
        assert [c.name for c in stored.spec.init_containers] == ["block-cloud-metadata"]
        ports = [p.name for c in stored.spec.containers for p in c.ports]
        assert ports == ["notebook-port", "mcp"]
    finally:
        try:
            op.unregister_webhook(kube_api)
        finally:
            op.stop()
            core.delete_namespace(namespace, propagation_policy="Background")


# --- the level-triggered pass: kopf watches no children, so only the pass can repair them --------


def counter(metrics: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples with these labels (0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == f"{name}_total" and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def writes(metrics: str) -> float:
    return sum(
        counter(metrics, "mcp_operator_api_requests", verb=verb)
        for verb in ("create", "update", "patch", "apply", "delete")
    )


def passes(cluster: Cluster) -> float:
    return counter(cluster.operator.metrics(), "mcp_operator_reconcile_passes", outcome="ok")


def wait_passes(cluster: Cluster, count: int) -> None:
    start = passes(cluster)
    eventually(f"{count} reconcile passes", lambda: passes(cluster) >= start + count)


def test_a_pass_repairs_children_deleted_or_edited_by_hand(cluster: Cluster) -> None:
    cluster.create_pod(user_pod("rita"))
    cluster.wired("jupyter-rita")
    name = "jupyter-rita-mcp"
    cluster.core.delete_namespaced_service(name, cluster.namespace)
    cluster.net.patch_namespaced_network_policy(
        name, cluster.namespace, {"spec": {"ingress": [{"ports": [{"port": 1234, "protocol": "TCP"}]}]}}
    )
    children = eventually("the pass to re-create rita's Service", lambda: cluster.children("jupyter-rita"))
    eventually(
        "the pass to restore the NetworkPolicy's port",
        lambda: (
            cluster.net.read_namespaced_network_policy(name, cluster.namespace).spec.ingress[0].ports[0].port
            == 8890
        ),
    )
    assert children["Service"].spec.ports[0].target_port == 8890


def test_a_pass_with_nothing_drifted_makes_no_write(cluster: Cluster) -> None:
    cluster.create_pod(user_pod("sam"))
    cluster.wired("jupyter-sam")
    wait_passes(cluster, 2)  # whatever the wiring and its status write needed is done by now
    before = cluster.operator.metrics()
    wait_passes(cluster, 2)
    after = cluster.operator.metrics()
    assert writes(after) == writes(before), "a pass over an unchanged namespace wrote"
    # ...and it did read: one list of pods and three of children per pass, at least
    assert (
        counter(after, "mcp_operator_api_requests", verb="list")
        >= counter(before, "mcp_operator_api_requests", verb="list") + 2 * 4
    )


def test_children_of_a_deleted_policy_are_removed(cluster: Cluster) -> None:
    cluster.apply_policy(
        "tina-only",
        {
            "selection": {"users": ["tina"], "priority": 10},
            "route": {"mode": "ingress", "host": "t.example.org"},
        },
    )
    cluster.create_pod(user_pod("tina"))
    assert cluster.pod("jupyter-tina").metadata.annotations["mcp.jupyterhub.org/injected"] == "tina-only/1"
    cluster.wired("jupyter-tina")
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, "tina-only")
    eventually(
        "the pass to remove the children of a deleted policy",
        lambda: cluster.children_left("jupyter-tina") == 0,
    )
