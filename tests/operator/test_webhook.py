"""The admission webhook server over real HTTP(S) (no API server needed: the reviews are the
AdmissionReview v1 documents the API server sends; the control-plane tests cover the real caller).
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest
import yaml
from mcp_operator.index import PolicyIndex
from mcp_operator.injection import InjectionOptions
from mcp_operator.webhook import (
    Listener,
    ReloadingCertificate,
    ServerThread,
    build_health_app,
    build_webhook_app,
)

from tests.fixtures.controlplane import make_ca, sign_cert
from tests.fixtures.tools import eventually, free_port

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "injection"
POD = yaml.safe_load((GOLDEN / "default-server" / "input.yaml").read_text())
POLICY = {"metadata": {"name": "everyone", "namespace": "jhub", "generation": 2}, "spec": {}}


class Servers:
    def __init__(self, tmp: Path) -> None:
        ca_pem, ca_key = make_ca()
        cert, key = sign_cert(ca_pem, ca_key, "127.0.0.1", hosts=["127.0.0.1"], server=True)
        (tmp / "tls.crt").write_bytes(cert)
        (tmp / "tls.key").write_bytes(key)
        self.ca = tmp / "ca.crt"
        self.ca.write_bytes(ca_pem)
        self.index = PolicyIndex()
        self.webhook_port, self.health_port = free_port(), free_port()
        self.thread = ServerThread(
            [
                Listener(
                    build_webhook_app(self.index, InjectionOptions),
                    "127.0.0.1",
                    self.webhook_port,
                    ReloadingCertificate(str(tmp / "tls.crt"), str(tmp / "tls.key")).context,
                ),
                Listener(build_health_app(self.index), "127.0.0.1", self.health_port),
            ]
        )
        self.thread.start()
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=str(self.ca)), timeout=10)

    def review(self, pod: dict[str, Any], **request: Any) -> httpx.Response:
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE",
                "namespace": "jhub",
                "name": pod["metadata"].get("name"),
                "object": pod,
                **request,
            },
        }
        return self.client.post(f"https://127.0.0.1:{self.webhook_port}/mutate-pod", json=body)

    def health(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.health_port}{path}", timeout=10)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    s = Servers(tmp_path_factory.mktemp("webhook"))
    try:
        yield s
    finally:
        s.client.close()
        s.thread.stop()


def test_readiness_follows_the_policy_index(servers: Servers) -> None:
    assert servers.health("/healthz").status_code == 200
    assert servers.health("/readyz").status_code == 503  # nothing loaded yet
    servers.index.load([POLICY])
    assert servers.health("/readyz").status_code == 200


def test_review_answers_with_a_json_patch(servers: Servers) -> None:
    servers.index.load([POLICY])
    pod = copy.deepcopy(POD)
    answer = servers.review(pod)
    assert answer.status_code == 200
    review = answer.json()
    response = review["response"]
    assert review["apiVersion"] == "admission.k8s.io/v1" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    assert patched["metadata"]["annotations"]["mcp.jupyterhub.org/injected"] == "everyone/2"


def test_untouched_pods_get_no_patch(servers: Servers) -> None:
    servers.index.load([POLICY])
    other = copy.deepcopy(POD)
    del other["metadata"]["annotations"]["hub.jupyter.org/username"]
    for response in (
        servers.review(other).json()["response"],
        servers.review(POD, namespace="elsewhere").json()["response"],
    ):
        assert response["allowed"] is True and "patch" not in response


def test_bad_request_is_refused_clearly(servers: Servers) -> None:
    url = f"https://127.0.0.1:{servers.webhook_port}/mutate-pod"
    answer = servers.client.post(url, content=b"{not json")
    assert answer.status_code == 400 and "bad AdmissionReview" in answer.json()["error"]
    answer = servers.client.post(url, json={"kind": "AdmissionReview"})
    assert answer.status_code == 400 and "request.uid" in answer.json()["error"]


def test_internal_error_admits_unchanged_and_counts(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    """A user can always spawn: a policy index that blows up must not block the pod."""

    def broken(namespace: str) -> tuple[Any, ...]:
        raise RuntimeError("index exploded")

    before = _metric(servers.health("/metrics").text, 'mcp_operator_admissions_total{outcome="error"}')
    original = servers.index.policies
    servers.index.policies = broken  # type: ignore[method-assign]
    try:
        response = servers.review(copy.deepcopy(POD)).json()["response"]
    finally:
        servers.index.policies = original  # type: ignore[method-assign]
    assert response["allowed"] is True and "patch" not in response
    after = _metric(servers.health("/metrics").text, 'mcp_operator_admissions_total{outcome="error"}')
    assert after == before + 1
    assert "index exploded" in caplog.text


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_handler_latency_is_measured(servers: Servers) -> None:
    servers.index.load([POLICY])
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        assert servers.review(copy.deepcopy(POD)).status_code == 200
        samples.append(time.perf_counter() - started)
    metrics = servers.health("/metrics").text
    assert _metric(metrics, "mcp_operator_webhook_duration_seconds_count") >= 200
    samples.sort()
    # Speed is reported here and measured in bench/operator_bench.py, not asserted.
    print(f"\nwebhook round trip over TLS p50 {samples[100] * 1000:.2f} ms p99 {samples[197] * 1000:.2f} ms")


# --- the serving certificate is renewed under a running webhook (cert-manager) -----------------


def _pair(tmp: Path, name: str) -> tuple[bytes, bytes, bytes]:
    """(ca, cert, key) of a fresh CA and a 127.0.0.1 serving certificate it signed."""
    ca_pem, ca_key = make_ca(f"{name}-ca")
    cert, key = sign_cert(ca_pem, ca_key, "127.0.0.1", hosts=["127.0.0.1"], server=True)
    return ca_pem, cert, key


def _mounted_renewal(
    tmp: Path,
) -> tuple[bytes, bytes, tuple[bytes, bytes], tuple[Path, Path], ReloadingCertificate]:
    """An old pair mounted as the operator reads it (tls.crt, tls.key) and loaded, plus a new pair
    from another CA to renew with: (old CA, new CA, new (cert, key), the files, the certificate)."""
    old_ca, old_cert, old_key = _pair(tmp, "old")
    new_ca, new_cert, new_key = _pair(tmp, "new")
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    cert_file.write_bytes(old_cert)
    key_file.write_bytes(old_key)
    certificate = ReloadingCertificate(str(cert_file), str(key_file))
    return old_ca, new_ca, (new_cert, new_key), (cert_file, key_file), certificate


def _handshake(server: ssl.SSLContext, ca_pem: bytes) -> bool:
    """A TLS handshake in memory (no socket, no thread) by a client trusting only `ca_pem`."""
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side, outgoing, peer_in in (
            ("client", client_side, c_out, s_in),
            ("server", server_side, s_out, c_in),
        ):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    return False
            peer_in.write(outgoing.read())
        if all(done.values()):
            return True
    return False


def test_certificate_reload_validates_the_pair_before_using_it(tmp_path: Path) -> None:
    old_ca, new_ca, (new_cert, new_key), (cert_file, key_file), certificate = _mounted_renewal(tmp_path)
    assert _handshake(certificate.context, old_ca) and not _handshake(certificate.context, new_ca)
    assert certificate.reload() is False  # unchanged files: nothing to do

    # caught half-way: the new certificate with the old key. Refused, and the old pair still serves.
    cert_file.write_bytes(new_cert)
    with pytest.raises(ssl.SSLError):
        certificate.reload()
    assert _handshake(certificate.context, old_ca)

    key_file.write_bytes(new_key)
    assert certificate.reload() is True
    assert _handshake(certificate.context, new_ca) and not _handshake(certificate.context, old_ca)

    key_file.unlink()
    with pytest.raises(OSError):
        certificate.reload()
    assert _handshake(certificate.context, new_ca)


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    """Rewrite the mounted files with a certificate from another CA (cert-manager renewing and
    re-issuing): a client trusting only the new CA is eventually served, on the same listener."""
    old_ca, new_ca, (new_cert, new_key), (cert_file, key_file), certificate = _mounted_renewal(tmp_path)
    port = free_port()
    thread = ServerThread(
        [Listener(build_health_app(PolicyIndex()), "127.0.0.1", port, certificate.context)],
        background=[lambda: certificate.watch(0.1)],
    )
    thread.start()

    def served(ca_pem: bytes) -> bool:
        trust = ssl.create_default_context(cadata=ca_pem.decode())
        try:
            return httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trust, timeout=5).status_code == 200
        except httpx.ConnectError:  # certificate verify failed
            return False

    try:
        assert served(old_ca) and not served(new_ca)
        # in the order that exposes a mismatched pair to the watcher for a moment
        cert_file.write_bytes(new_cert)
        key_file.write_bytes(new_key)
        eventually("the renewed certificate to be served", lambda: served(new_ca), timeout=30)
        assert not served(old_ca)
    finally:
        thread.stop()
