"""`jupyterhub-mcp-operator`: kopf (standalone, namespaced) + the admission webhook + health/metrics.

Flags and their environment variables: docs/architecture.md, "Operator process contract".
Start-up order matters: the policy index is loaded with one LIST before the webhook listens, so
the first pod admitted already sees every policy.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from mcp_operator import main as handlers
from mcp_operator import token_handlers  # noqa: F401  (registers the hub-token handlers with kopf)
from mcp_operator.children import DEFAULT_INGRESS_SELECTOR, SelectorError, parse_ingress_selector
from mcp_operator.injection import DEFAULT_SIDECAR_IMAGE, InjectionOptions, native_sidecar_supported
from mcp_operator.webhook import (
    Listener,
    ReloadingCertificate,
    ServerThread,
    build_health_app,
    build_webhook_app,
)

log = logging.getLogger("mcp_operator")
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="jupyterhub-mcp-operator", description=__doc__.splitlines()[0])
    p.add_argument(
        "--namespace",
        action="append",
        help="namespace to watch (repeatable, or comma-separated) [MCP_OPERATOR_NAMESPACE]; "
        "default: the pod's own namespace",
    )
    p.add_argument("--webhook-host", default="0.0.0.0")
    p.add_argument("--webhook-port", type=int, default=int(_env("MCP_WEBHOOK_PORT", "8443")))
    p.add_argument("--tls-cert", default=_env("MCP_WEBHOOK_TLS_CERT", "/tls/tls.crt"))
    p.add_argument("--tls-key", default=_env("MCP_WEBHOOK_TLS_KEY", "/tls/tls.key"))
    p.add_argument(
        "--tls-reload-interval",
        type=float,
        default=float(_env("MCP_WEBHOOK_TLS_RELOAD_INTERVAL", "30")),
        help="seconds between checks of the certificate files; a renewed certificate is served "
        "without a restart [MCP_WEBHOOK_TLS_RELOAD_INTERVAL]",
    )
    p.add_argument("--health-host", default="0.0.0.0")
    p.add_argument("--health-port", type=int, default=int(_env("MCP_HEALTH_PORT", "8080")))
    p.add_argument(
        "--native-sidecar", choices=("auto", "true", "false"), default=_env("MCP_NATIVE_SIDECAR", "auto")
    )
    p.add_argument(
        "--sidecar-image",
        default=_env("MCP_SIDECAR_IMAGE", DEFAULT_SIDECAR_IMAGE),
        help="sidecar image for policies without spec.sidecar.image [MCP_SIDECAR_IMAGE]",
    )
    p.add_argument(
        "--ingress-controller-selector", default=_env("MCP_INGRESS_SELECTOR", DEFAULT_INGRESS_SELECTOR)
    )
    p.add_argument("--hub-api-url", default=_env("JUPYTERHUB_API_URL"))
    p.add_argument("--standalone", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def namespaces(args: argparse.Namespace) -> list[str]:
    raw = args.namespace or [_env("MCP_OPERATOR_NAMESPACE") or ""]
    found = [n.strip() for item in raw for n in item.split(",") if n.strip()]
    if not found and SA_NAMESPACE.exists():
        found = [SA_NAMESPACE.read_text().strip()]
    if not found:
        raise SystemExit("no namespace to watch: pass --namespace or set MCP_OPERATOR_NAMESPACE")
    return found


def kube_client() -> k8s.ApiClient:
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    configuration = k8s.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = 32  # children are applied from a thread pool
    return k8s.ApiClient(configuration)


def detect_native_sidecar(choice: str, api: k8s.ApiClient) -> bool:
    if choice != "auto":
        return choice == "true"
    version = k8s.VersionApi(api).get_code()
    native = native_sidecar_supported(version.major, version.minor)
    log.info("API server %s: native sidecars %s", version.git_version, "on" if native else "off")
    return native


def load_policies(api: k8s.ApiClient, watched: list[str]) -> None:
    custom = k8s.CustomObjectsApi(api)
    objects = []
    for namespace in watched:
        try:
            listed = custom.list_namespaced_custom_object(
                handlers.GROUP, handlers.VERSION, namespace, handlers.PLURAL
            )
        except ApiException as e:
            if e.status == 404:
                raise SystemExit(
                    "the MCPPolicy CRD (mcppolicies.mcp.jupyterhub.org) is not installed: "
                    "kubectl apply -f crds/mcppolicy.yaml"
                ) from e
            if e.status == 403:
                raise SystemExit(f"not allowed to list MCPPolicies in {namespace}: {e.reason} (RBAC)") from e
            raise
        objects += listed.get("items") or []
    for name, error in handlers.runtime.index.load(objects):
        log.warning("MCPPolicy %s is not used: %s", name, error)
    log.info("policy index loaded: %d policies in %s", len(objects), ", ".join(watched))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.tls_reload_interval > 0:
        raise SystemExit(
            f"--tls-reload-interval must be a positive number of seconds, got {args.tls_reload_interval}"
        )
    watched = namespaces(args)
    try:
        selector = parse_ingress_selector(args.ingress_controller_selector)
    except SelectorError as e:
        raise SystemExit(f"--ingress-controller-selector: {e}") from e
    if args.hub_api_url:
        os.environ["JUPYTERHUB_API_URL"] = args.hub_api_url  # read by the token handlers
    api = kube_client()
    runtime = handlers.runtime
    runtime.api = api
    runtime.ingress_selector = selector
    runtime.options = InjectionOptions(
        native_sidecar=detect_native_sidecar(args.native_sidecar, api), sidecar_image=args.sidecar_image
    )
    load_policies(api, watched)

    certificate = ReloadingCertificate(args.tls_cert, args.tls_key)
    servers = ServerThread(
        [
            Listener(
                build_webhook_app(runtime.index, lambda: runtime.options),
                args.webhook_host,
                args.webhook_port,
                certificate.context,
            ),
            Listener(build_health_app(runtime.index), args.health_host, args.health_port),
        ],
        background=[lambda: certificate.watch(args.tls_reload_interval)],
    )
    servers.start()
    log.info(
        "webhook on https://%s:%d/mutate-pod, health on :%d",
        args.webhook_host,
        args.webhook_port,
        args.health_port,
    )
    try:
        asyncio.run(kopf.operator(standalone=args.standalone, namespaces=watched, clusterwide=False))
    finally:
        servers.stop()
        api.close()


if __name__ == "__main__":
    sys.exit(main())
