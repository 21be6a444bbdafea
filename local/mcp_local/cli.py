"""``jupyterhub-mcp``: local mode. ``jupyterhub-mcp demo`` runs the whole product on this machine."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from mcp_operator.policy import Policy, PolicyError

from .plan import DemoOptions, OptionsError, parse_port_range, parse_users
from .sidecar_env import demo_policy

# What `jupyterhub-mcp demo` imports or runs beyond the base install: the `demo` extra.
DEMO_EXTRA_HINT = "pip install 'jupyterhub-mcp[demo]'"
DEMO_MODULES = {
    "jupyterhub": "jupyterhub",
    "jupyter_server": "jupyter_server",
    "jupyter_server_ydoc": "jupyter-collaboration",
    "ipykernel": "ipykernel",
    "psutil": "psutil",
    "yaml": "pyyaml",
}


def missing_demo_packages() -> list[str]:
    """The `demo` extra's distributions that are not installed (by their import names)."""
    return [dist for module, dist in DEMO_MODULES.items() if importlib.util.find_spec(module) is None]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyterhub-mcp", description="Per-user MCP endpoints for JupyterHub, local mode."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="real JupyterHub + configurable-http-proxy + an MCP sidecar beside every user server",
        description="Starts JupyterHub (local processes) behind configurable-http-proxy, starts a server "
        "and its MCP sidecar for each demo user, and prints each user's MCP endpoint, a fresh token and "
        "a client configuration. Ctrl-C stops everything. "
        f"Needs the demo extra ({DEMO_EXTRA_HINT}) and configurable-http-proxy (npm). "
        "Not isolated: every demo user runs as your OS user, so code in one user's kernel can read "
        "another user's files, their mcp.json and its token included; use it to try things alone, "
        "not to share a machine.",
    )
    demo.add_argument("--users", default="alice,bob", help="comma-separated demo users (default alice,bob)")
    demo.add_argument("--state-dir", default=".demo", type=Path, help="sqlite, secrets, logs, homes")
    demo.add_argument("--ip", default="127.0.0.1", help="where the public proxy listens")
    demo.add_argument("--port", type=int, default=8000, help="public proxy port (default 8000)")
    demo.add_argument("--hub-port", type=int, default=8081, help="hub API port (default 8081)")
    demo.add_argument("--proxy-api-port", type=int, default=8001, help="proxy REST API port (default 8001)")
    demo.add_argument("--sidecar-ports", help="e.g. 9000-9099 (default: any free port)")
    demo.add_argument("--token-ttl", type=int, default=86400, help="seconds the printed tokens live")
    demo.add_argument(
        "--auth-port", type=int, default=0, help="MCP authorization server port (default: any free port)"
    )
    demo.add_argument(
        "--oauth-token-ttl", type=int, default=3600, help="seconds the tokens of a by-URL login live"
    )
    demo.add_argument(
        "--policy", type=Path, help="an MCPPolicy manifest (YAML) for the sidecars, as in a cluster"
    )
    demo.add_argument(
        "--mode", choices=["read-only", "edit", "execute"], help="tool mode (overrides the policy's)"
    )
    # For tests: how often the hub runs its route check (which must leave the MCP routes alone).
    demo.add_argument("--route-check-interval", type=int, default=300, help=argparse.SUPPRESS)
    return parser


def load_policy(path: Path | None, mode: str | None) -> dict[str, Any]:
    """The MCPPolicy object the sidecars run under, checked by the operator's own parser."""
    if path is None:
        policy = demo_policy()
    else:
        import yaml  # the demo extra; checked in main

        try:
            policy = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise OptionsError(f"--policy {path}: {exc}") from None
        if not isinstance(policy, dict) or policy.get("kind", "MCPPolicy") != "MCPPolicy":
            raise OptionsError(f"--policy {path}: not an MCPPolicy manifest")
    if mode:
        policy.setdefault("spec", {}).setdefault("tools", {})["mode"] = mode
    try:
        Policy.from_object(policy)
    except PolicyError as exc:
        raise OptionsError(f"--policy: {exc}") from None
    return policy


def options_from(args: argparse.Namespace) -> DemoOptions:
    return DemoOptions(
        users=parse_users(args.users),
        state_dir=args.state_dir.resolve(),
        ip=args.ip,
        port=args.port,
        hub_port=args.hub_port,
        proxy_api_port=args.proxy_api_port,
        sidecar_ports=parse_port_range(args.sidecar_ports),
        token_ttl=args.token_ttl,
        policy=load_policy(args.policy, args.mode),
        route_check_interval=args.route_check_interval,
        auth_port=args.auth_port,
        oauth_access_ttl=args.oauth_token_ttl,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    missing = missing_demo_packages()
    if missing:
        print(
            f"jupyterhub-mcp demo: needs {', '.join(missing)}, not installed here: {DEMO_EXTRA_HINT}",
            file=sys.stderr,
        )
        return 2
    from mcp_operator.hubclient import HubError  # after parsing: --help stays fast

    from .demo import DemoError, run_demo
    from .processes import PortInUse

    try:
        options = options_from(args)
        return asyncio.run(run_demo(options))
    except (OptionsError, PortInUse, DemoError, HubError) as exc:
        print(f"jupyterhub-mcp demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
