"""`jupyterhub-mcp-operator`: kopf (standalone, namespaced) + the admission webhook + health/metrics.

Flags and their environment variables: `jupyterhub-mcp-operator --help`, docs/architecture.md.
Start-up order matters: the policy index is loaded with one LIST before the webhook listens, so
the first pod admitted already sees every policy.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

import kopf
from kubernetes.client.exceptions import ApiException

from mcp_operator import handlers
from mcp_operator.chp import ProxyRouter
from mcp_operator.config import ConfigError, OperatorConfig
from mcp_operator.hubclient import HubPool
from mcp_operator.index import PolicyIndex
from mcp_operator.injection import InjectionOptions, native_sidecar_supported
from mcp_operator.kube import Kube, build_api_client
from mcp_operator.reachability import ReachabilityProbe
from mcp_operator.reconcile import PeriodicReconcile
from mcp_operator.state import OperatorState
from mcp_operator.token_workers import TokenReconciler, TokenWorkers
from mcp_operator.uninstall import release_all, stop_operator
from mcp_operator.webhook import (
    Listener,
    ReloadingCertificate,
    ServerThread,
    build_health_app,
    build_webhook_app,
)
from mcp_operator.wiring import ChildWiring

log = logging.getLogger("mcp_operator")


def detect_native_sidecar(config: OperatorConfig, kube: Kube) -> bool:
    if config.native_sidecar != "auto":
        return config.native_sidecar == "true"
    major, minor, git_version = kube.server_version()
    native = native_sidecar_supported(major, minor)
    log.info("API server %s: native sidecars %s", git_version, "on" if native else "off")
    return native


async def load_policies(kube: Kube, index: PolicyIndex, namespaces: Sequence[str]) -> None:
    objects = []
    for namespace in namespaces:
        try:
            objects += await kube.list_policies(namespace)
        except ApiException as e:
            if e.status == 404:
                raise SystemExit(
                    "the MCPPolicy CRD (mcppolicies.mcp.jupyterhub.org) is not installed: "
                    "kubectl apply -f crds/mcppolicy.yaml"
                ) from e
            if e.status == 403:
                raise SystemExit(f"not allowed to list MCPPolicies in {namespace}: {e.reason} (RBAC)") from e
            raise
    for name, error in index.load(objects):
        log.warning("MCPPolicy %s is not used: %s", name, error)
    log.info("policy index loaded: %d policies in %s", len(objects), ", ".join(namespaces))


def build_router(config: OperatorConfig, kube: Kube) -> ProxyRouter:
    """Routes in configurable-http-proxy, for policies in route mode proxy (the default)."""
    token_from = (
        "CONFIGPROXY_AUTH_TOKEN"
        if config.proxy_auth_token
        else f"Secret {config.proxy_token_secret} key {config.proxy_token_key}"
    )
    log.info("proxy routes: configurable-http-proxy at %s, token from %s", config.proxy_api_url, token_from)
    return ProxyRouter(
        config.proxy_api_url,
        token=config.proxy_auth_token,
        secrets=kube,
        secret_name=config.proxy_token_secret,
        secret_key=config.proxy_token_key,
    )


def build_state(config: OperatorConfig, kube: Kube, index: PolicyIndex) -> OperatorState:
    router = build_router(config, kube)
    wiring = ChildWiring(
        kube,
        index,
        config.ingress_selector,
        router=router,
        extra_peers=config.extra_peers,
        reachability=ReachabilityProbe() if config.check_reachable else None,
        proxy_public_url=config.proxy_public_url,
        hub_public_url=config.hub_public_url,
    )
    reconciler = None
    if config.hub_api_token:
        hubs = HubPool(config.hub_api_token, config.hub_api_url)
        reconciler = TokenReconciler(
            hubs, kube, hub_public_url=config.hub_public_url, retry_delay=config.token_retry_delay
        )
        log.info(
            "hub tokens: minting through %s",
            config.hub_api_url or "each pod's JUPYTERHUB_API_URL (no --hub-api-url)",
        )
    else:
        log.warning("JUPYTERHUB_API_TOKEN is not set: policies with tokens.issue get no hub tokens")
    tokens = TokenWorkers(kube, reconciler, retry_delay=config.token_retry_delay)
    return OperatorState(
        config=config,
        kube=kube,
        index=index,
        options=InjectionOptions(
            native_sidecar=detect_native_sidecar(config, kube), sidecar_image=config.sidecar_image
        ),
        wiring=wiring,
        tokens=tokens,
        reconcile=PeriodicReconcile(
            kube, wiring, tokens, config.namespaces, interval=config.reconcile_interval, router=router
        ),
    )


def start_servers(config: OperatorConfig, state: OperatorState) -> ServerThread:
    listeners = [Listener(build_health_app(state.index), config.health_host, config.health_port)]
    background = []
    if config.webhook:
        certificate = ReloadingCertificate(config.tls_cert, config.tls_key)
        webhook_app = build_webhook_app(state.index, lambda: state.options)
        listeners.insert(
            0, Listener(webhook_app, config.webhook_host, config.webhook_port, certificate.context)
        )
        background.append(lambda: certificate.watch(config.tls_reload_interval))
    servers = ServerThread(listeners, background=background)
    servers.start()
    if config.webhook:
        log.info("webhook on https://%s:%d/mutate-pod", config.webhook_host, config.webhook_port)
    log.info("health and metrics on :%d", config.health_port)
    return servers


async def uninstall(config: OperatorConfig, kube: Kube) -> int:
    """The pre-delete hook; exit status 0 even when a token could not be revoked (said on stderr):
    a failed hook would block `helm uninstall` on a hub that is down."""
    for namespace in config.namespaces if config.operator_deployment else ():
        await stop_operator(kube, namespace, config.operator_deployment or "")
    hubs = HubPool(config.hub_api_token, config.hub_api_url) if config.hub_api_token else None
    try:
        report = await release_all(kube, hubs, config.namespaces)
    finally:
        if hubs is not None:
            await hubs.aclose()
    print(report.summary(), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    try:
        config = OperatorConfig.from_args(argv, os.environ)
    except ConfigError as e:
        raise SystemExit(f"jupyterhub-mcp-operator: {e}") from e
    logging.basicConfig(
        level=logging.DEBUG if config.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kube = Kube(build_api_client())
    if config.uninstall:
        raise SystemExit(asyncio.run(uninstall(config, kube)))
    index = PolicyIndex()
    asyncio.run(load_policies(kube, index, config.namespaces))
    state = build_state(config, kube, index)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, config)
    servers = start_servers(config, state)
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                memo=state,
                standalone=config.standalone,
                namespaces=list(config.namespaces),
                clusterwide=False,
            )
        )
    finally:
        servers.stop()
        kube.close()


if __name__ == "__main__":
    main()
