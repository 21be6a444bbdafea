"""The operator's configuration: one frozen `OperatorConfig`, built once at start-up from argv and
the environment (flags win; each flag's variable is named in its help). Nothing else in the
operator reads the environment.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcp_operator.children import DEFAULT_INGRESS_SELECTOR, SelectorError, parse_ingress_selector
from mcp_operator.constants import PROXY_API_URL, PROXY_PUBLIC_URL, PROXY_TOKEN_KEY, PROXY_TOKEN_SECRET
from mcp_operator.injection import DEFAULT_SIDECAR_IMAGE

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
NativeSidecar = Literal["auto", "true", "false"]


class ConfigError(ValueError):
    """An option the operator cannot start with; the message names the flag and what to do."""


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...]
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8443
    webhook: bool = True
    tls_cert: str = "/tls/tls.crt"
    tls_key: str = "/tls/tls.key"
    tls_reload_interval: float = 30.0
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    native_sidecar: NativeSidecar = "auto"
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    ingress_selector: Mapping[str, Any] = field(
        default_factory=lambda: parse_ingress_selector(DEFAULT_INGRESS_SELECTOR)
    )
    extra_peers: tuple[Mapping[str, Any], ...] = ()  # NetworkPolicy peers for every user pod
    hub_api_url: str | None = None
    hub_api_token: str | None = field(default=None, repr=False)  # a secret: never in a repr or log
    hub_public_url: str | None = None
    proxy_api_url: str = PROXY_API_URL
    proxy_public_url: str = PROXY_PUBLIC_URL
    check_reachable: bool = True
    proxy_auth_token: str | None = field(default=None, repr=False)  # a secret: never in a repr or log
    proxy_token_secret: str = PROXY_TOKEN_SECRET
    proxy_token_key: str = PROXY_TOKEN_KEY
    token_check_interval: float = 60.0
    token_retry_delay: float = 10.0
    reconcile_interval: float = 60.0
    standalone: bool = True
    verbose: bool = False
    uninstall: bool = False  # the chart's pre-delete hook: release everything, then exit
    operator_deployment: str | None = None  # what --uninstall stops first

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None, env: Mapping[str, str], *, sa_namespace: Path = SA_NAMESPACE
    ) -> OperatorConfig:
        args = _parser(env).parse_args(argv)
        raw = args.namespace or [env.get("MCP_OPERATOR_NAMESPACE") or ""]
        namespaces = [n.strip() for item in raw for n in item.split(",") if n.strip()]
        if not namespaces and sa_namespace.exists():
            namespaces = [sa_namespace.read_text().strip()]
        if not namespaces:
            raise ConfigError("no namespace to watch: pass --namespace or set MCP_OPERATOR_NAMESPACE")
        for flag, value in (
            ("--tls-reload-interval", args.tls_reload_interval),
            ("--token-check-interval", args.token_check_interval),
            ("--token-retry-delay", args.token_retry_delay),
            ("--reconcile-interval", args.reconcile_interval),
        ):
            if not value > 0:  # also refuses NaN
                raise ConfigError(f"{flag} must be a positive number of seconds, got {value}")
        if not args.proxy_api_url.startswith(("http://", "https://")):
            raise ConfigError(f"--proxy-api-url must be an http(s) URL, got {args.proxy_api_url!r}")
        try:
            selector = parse_ingress_selector(args.ingress_controller_selector)
        except SelectorError as e:
            raise ConfigError(f"--ingress-controller-selector: {e}") from e
        extra_peers = _peers(args.network_extra_peers)
        return cls(
            namespaces=tuple(namespaces),
            webhook_host=args.webhook_host,
            webhook_port=args.webhook_port,
            webhook=args.webhook,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_reload_interval=args.tls_reload_interval,
            health_host=args.health_host,
            health_port=args.health_port,
            native_sidecar=args.native_sidecar,
            sidecar_image=args.sidecar_image,
            ingress_selector=selector,
            extra_peers=extra_peers,
            hub_api_url=args.hub_api_url or None,
            hub_api_token=env.get("JUPYTERHUB_API_TOKEN") or None,
            hub_public_url=args.hub_public_url or None,
            proxy_api_url=args.proxy_api_url,
            proxy_public_url=args.proxy_public_url,
            check_reachable=args.check_reachable,
            proxy_auth_token=env.get("CONFIGPROXY_AUTH_TOKEN") or None,
            proxy_token_secret=args.proxy_token_secret,
            proxy_token_key=args.proxy_token_key,
            token_check_interval=args.token_check_interval,
            token_retry_delay=args.token_retry_delay,
            reconcile_interval=args.reconcile_interval,
            standalone=args.standalone,
            verbose=args.verbose,
            uninstall=args.uninstall,
            operator_deployment=args.operator_deployment or None,
        )


def _peers(text: str) -> tuple[Mapping[str, Any], ...]:
    try:
        peers = json.loads(text or "[]")
    except json.JSONDecodeError as e:
        raise ConfigError(f"--network-extra-peers must be a JSON list of NetworkPolicy peers: {e}") from e
    allowed = {"ipBlock", "namespaceSelector", "podSelector"}
    if not isinstance(peers, list) or not all(isinstance(p, dict) and p and set(p) <= allowed for p in peers):
        raise ConfigError(
            "--network-extra-peers must be a JSON list of NetworkPolicy peers "
            f"(objects with {', '.join(sorted(allowed))}), got {text!r}"
        )
    return tuple(peers)


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def default(name: str, fallback: str | None = None) -> str | None:
        return env.get(name) or fallback

    p = argparse.ArgumentParser(
        prog="jupyterhub-mcp-operator",
        description="kopf (standalone, namespaced) + the admission webhook + health/metrics.",
    )
    p.add_argument(
        "--namespace",
        action="append",
        help="namespace to watch (repeatable, or comma-separated) [MCP_OPERATOR_NAMESPACE]; "
        "default: the pod's own namespace",
    )
    p.add_argument("--webhook-host", default="0.0.0.0")
    p.add_argument("--webhook-port", type=int, default=int(default("MCP_WEBHOOK_PORT", "8443") or 8443))
    p.add_argument(
        "--webhook",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve the admission webhook (--no-webhook: only the controllers, e.g. for their tests)",
    )
    p.add_argument("--tls-cert", default=default("MCP_WEBHOOK_TLS_CERT", "/tls/tls.crt"))
    p.add_argument("--tls-key", default=default("MCP_WEBHOOK_TLS_KEY", "/tls/tls.key"))
    p.add_argument(
        "--tls-reload-interval",
        type=float,
        default=float(default("MCP_WEBHOOK_TLS_RELOAD_INTERVAL", "30") or 30),
        help="seconds between checks of the certificate files; a renewed certificate is served "
        "without a restart [MCP_WEBHOOK_TLS_RELOAD_INTERVAL]",
    )
    p.add_argument("--health-host", default="0.0.0.0")
    p.add_argument("--health-port", type=int, default=int(default("MCP_HEALTH_PORT", "8080") or 8080))
    p.add_argument(
        "--native-sidecar", choices=("auto", "true", "false"), default=default("MCP_NATIVE_SIDECAR", "auto")
    )
    p.add_argument(
        "--sidecar-image",
        default=default("MCP_SIDECAR_IMAGE", DEFAULT_SIDECAR_IMAGE),
        help="sidecar image for policies without spec.sidecar.image [MCP_SIDECAR_IMAGE]",
    )
    p.add_argument(
        "--ingress-controller-selector", default=default("MCP_INGRESS_SELECTOR", DEFAULT_INGRESS_SELECTOR)
    )
    p.add_argument(
        "--network-extra-peers",
        default=default("MCP_NETWORK_EXTRA_PEERS", "[]"),
        help="JSON list of NetworkPolicy peers (e.g. ipBlocks of a cloud load balancer) allowed to "
        "reach every sidecar, besides Zero to JupyterHub's proxy and the route's [MCP_NETWORK_EXTRA_PEERS]",
    )
    p.add_argument(
        "--hub-api-url",
        default=default("JUPYTERHUB_API_URL"),
        help="the hub's API, for minting tokens [JUPYTERHUB_API_URL]; default: each pod's own "
        "JUPYTERHUB_API_URL (it has the hub's base URL in it); the service token is "
        "JUPYTERHUB_API_TOKEN (environment only: never a flag, never logged)",
    )
    p.add_argument(
        "--hub-public-url",
        default=default("JUPYTERHUB_PUBLIC_URL"),
        help="the hub's public URL, for the endpoint URL in token Secrets [JUPYTERHUB_PUBLIC_URL]",
    )
    p.add_argument(
        "--proxy-api-url",
        default=default("MCP_PROXY_API_URL", PROXY_API_URL),
        help="configurable-http-proxy's REST API, for route mode proxy [MCP_PROXY_API_URL]; "
        "{namespace} in it is replaced by each watched namespace",
    )
    p.add_argument(
        "--proxy-public-url",
        default=default("MCP_PROXY_PUBLIC_URL", PROXY_PUBLIC_URL),
        help="where users' requests enter configurable-http-proxy, from inside the cluster; the "
        "Reachable check asks each endpoint there in route mode proxy [MCP_PROXY_PUBLIC_URL]; "
        "{namespace} in it is replaced by the pod's namespace",
    )
    p.add_argument(
        "--check-reachable",
        action=argparse.BooleanOptionalAction,
        default=(default("MCP_CHECK_REACHABLE", "true") or "true").lower() not in ("0", "false", "no"),
        help="after wiring, ask each endpoint without a token and expect the sidecar's 401 "
        "(pod Event, policy status counts) [MCP_CHECK_REACHABLE]",
    )
    p.add_argument(
        "--proxy-token-secret",
        default=default("MCP_PROXY_TOKEN_SECRET", PROXY_TOKEN_SECRET),
        help="Secret (in the pod's namespace) holding CHP's token [MCP_PROXY_TOKEN_SECRET]; "
        "CONFIGPROXY_AUTH_TOKEN (environment only, never logged) overrides it",
    )
    p.add_argument(
        "--proxy-token-key",
        default=default("MCP_PROXY_TOKEN_KEY", PROXY_TOKEN_KEY),
        help="key of CHP's token in that Secret [MCP_PROXY_TOKEN_KEY]",
    )
    p.add_argument(
        "--token-check-interval",
        type=float,
        default=float(default("MCP_TOKEN_CHECK_INTERVAL", "60") or 60),
        help="seconds between rotation checks of each token Secret [MCP_TOKEN_CHECK_INTERVAL]",
    )
    p.add_argument(
        "--token-retry-delay",
        type=float,
        default=float(default("MCP_TOKEN_RETRY_DELAY", "10") or 10),
        help="first backoff delay when the hub fails; it doubles per retry [MCP_TOKEN_RETRY_DELAY]",
    )
    p.add_argument(
        "--reconcile-interval",
        type=float,
        default=float(default("MCP_RECONCILE_INTERVAL", "60") or 60),
        help="seconds between level-triggered passes over every injected pod [MCP_RECONCILE_INTERVAL]",
    )
    p.add_argument("--standalone", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--uninstall",
        action="store_true",
        help="instead of running: stop --operator-deployment, revoke every hub token this operator "
        "minted in the namespaces and delete their Secrets, then exit (helm's pre-delete hook)",
    )
    p.add_argument(
        "--operator-deployment",
        default=default("MCP_OPERATOR_DEPLOYMENT", ""),
        help="the operator's Deployment, scaled to 0 by --uninstall before anything is released "
        "[MCP_OPERATOR_DEPLOYMENT]",
    )
    p.add_argument("--verbose", action="store_true")
    return p
