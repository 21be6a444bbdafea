"""HTTPS admission webhook (AdmissionReview v1) at /mutate-pod, plus the health/metrics server.

Both run on their own thread with their own event loop, so a busy operator loop (300 pods being
wired) does not delay admission. The handler only reads the in-memory policy index: no API call
in the admission path. Any internal error admits the pod unchanged (a user can always spawn),
logs a line and counts a metric.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mcp_operator.index import PolicyIndex
from mcp_operator.injection import InjectionOptions, plan_injection
from mcp_operator.metrics import INJECTIONS, WEBHOOK_LATENCY

log = logging.getLogger(__name__)

MUTATE_PATH = "/mutate-pod"
MAX_BODY = 4 * 1024 * 1024  # a pod spec is far smaller; refuse anything silly before parsing


def review_response(uid: str, patch: list[dict[str, Any]] | None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def admit(review: dict[str, Any], index: PolicyIndex, options: InjectionOptions) -> dict[str, Any]:
    """One AdmissionReview in, its answer out (pure apart from metrics and the log)."""
    request = review.get("request")
    if not isinstance(request, dict) or not request.get("uid"):
        raise ValueError("AdmissionReview without request.uid")
    uid = request["uid"]
    try:
        pod = request.get("object") or {}
        namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or ""
        if (
            request.get("operation", "CREATE") != "CREATE"
            or request.get("kind", {}).get("kind", "Pod") != "Pod"
        ):
            INJECTIONS.labels(outcome="ignored").inc()
            return review_response(uid, None)
        decision = plan_injection(pod, index.policies(namespace), options)
    except Exception:
        log.exception("webhook: admitting pod %s unchanged after an internal error", request.get("name"))
        INJECTIONS.labels(outcome="error").inc()
        return review_response(uid, None)
    INJECTIONS.labels(outcome=decision.reason).inc()
    if decision.patch and decision.policy is not None:
        log.info(
            "webhook: %s/%s gets the sidecar of %s", namespace, request.get("name"), decision.policy.marker
        )
    return review_response(uid, decision.patch)


def build_webhook_app(index: PolicyIndex, options: Callable[[], InjectionOptions]) -> web.Application:
    async def mutate(request: web.Request) -> web.Response:
        body = await request.read()
        # The clock starts once the body is here (the metric's definition): waiting for the API
        # server to send it is network time, which bench/ measures end to end.
        started = time.perf_counter()
        try:
            try:
                review = json.loads(body)
                answer = admit(review, index, options())
            except (ValueError, TypeError, AttributeError) as e:
                log.warning("webhook: bad AdmissionReview: %s", e)
                INJECTIONS.labels(outcome="bad-request").inc()
                return web.json_response({"error": f"bad AdmissionReview: {e}"}, status=400)
            return web.json_response(answer)
        finally:
            WEBHOOK_LATENCY.observe(time.perf_counter() - started)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(MUTATE_PATH, mutate)
    return app


def build_health_app(index: PolicyIndex) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if index.synced.is_set():
            return web.Response(text="ok")
        return web.Response(text="policy index not loaded yet", status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


@dataclass
class Listener:
    app: web.Application
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None


def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@contextlib.contextmanager
def _private_files(*contents: bytes) -> Iterator[list[str]]:
    """Paths holding exactly `contents`, so a pair read once can be loaded twice (validated, then
    used) even while the originals are being replaced. Anonymous memory files where the kernel has
    them (no writable filesystem needed), else a private temporary directory."""
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fds = []
        try:
            for data in contents:
                fd = os.memfd_create("mcp-webhook-tls", os.MFD_CLOEXEC)
                fds.append(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            yield [f"/proc/self/fd/{fd}" for fd in fds]
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="mcp-webhook-tls-") as tmp:
        paths = []
        for i, data in enumerate(contents):
            path = Path(tmp) / str(i)
            path.touch(0o600)
            path.write_bytes(data)
            paths.append(str(path))
        yield paths


class ReloadingCertificate:
    """The webhook's serving certificate, reloaded into the same SSLContext when the mounted files
    change (cert-manager renews it and updates the webhook's caBundle; the pod is not restarted).
    New handshakes use the new certificate, open connections keep theirs.

    A pair is loaded only after it has been validated as a whole: Secret volumes are swapped
    atomically, but a reader can still catch the new certificate with the old key, and loading
    that into the live context would leave it without a usable key. Such a pair is skipped and
    tried again at the next check."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.context = _server_context()
        self._loaded: str | None = None
        try:
            self.reload()
        except (OSError, ssl.SSLError) as e:
            raise SystemExit(
                f"cannot load the webhook TLS certificate {cert_file} / key {key_file}: {e}"
            ) from e

    def reload(self) -> bool:
        """Load the files if they changed. True when a new certificate is in use; raises OSError or
        ssl.SSLError (the current certificate stays) when they cannot be read or do not match."""
        cert, key = Path(self.cert_file).read_bytes(), Path(self.key_file).read_bytes()
        digest = hashlib.sha256(hashlib.sha256(cert).digest() + key).hexdigest()
        if digest == self._loaded:
            return False
        with _private_files(cert, key) as (cert_path, key_path):
            _server_context().load_cert_chain(cert_path, key_path)  # the pair on its own first
            self.context.load_cert_chain(cert_path, key_path)
        self._loaded = digest
        return True

    async def watch(self, interval: float) -> None:
        """Check the files every `interval` seconds (on the webhook thread, like the handshakes)."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.reload():
                    log.info("webhook TLS certificate reloaded from %s", self.cert_file)
            except (OSError, ssl.SSLError) as e:
                log.warning(
                    "webhook TLS certificate %s not reloaded, serving the previous one: %s", self.cert_file, e
                )


class ServerThread:
    """Runs aiohttp listeners on a daemon thread with its own loop."""

    def __init__(
        self, listeners: list[Listener], background: Sequence[Callable[[], Awaitable[None]]] = ()
    ) -> None:
        self.listeners = listeners
        self.background = background  # run on the thread's loop once the listeners are up
        self._background_tasks: list[asyncio.Task[None]] = []
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.error: BaseException | None = None
        self._runners: list[web.AppRunner] = []
        self.thread = threading.Thread(target=self._run, name="mcp-webhook", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        if not self.started.wait(timeout):
            raise RuntimeError("webhook server did not start")
        if self.error:
            raise RuntimeError(f"webhook server failed to start: {self.error}") from self.error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as e:  # reported to start(), which raises it in the main thread
            self.error = e
            self.started.set()
            return
        self.started.set()
        self.loop.run_forever()

    async def _serve(self) -> None:
        for listener in self.listeners:
            runner = web.AppRunner(listener.app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, listener.host, listener.port, ssl_context=listener.ssl_context)
            await site.start()
            self._runners.append(runner)
        for start in self.background:
            self._background_tasks.append(asyncio.ensure_future(start()))

    def stop(self) -> None:
        async def cleanup() -> None:
            for task in self._background_tasks:
                task.cancel()
            for runner in self._runners:
                await runner.cleanup()

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(cleanup(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
