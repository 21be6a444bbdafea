"""``jupyterhub-mcp-sidecar``: configured by environment, flags mirror it."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import ConfigError, Settings

log = logging.getLogger("mcp_sidecar")

# flag -> environment variable it overrides
FLAGS = {
    "--host": "MCP_HOST",
    "--port": "MCP_PORT",
    "--prefix": "JUPYTERHUB_SERVICE_PREFIX",
    "--jupyter-url": "JUPYTER_SERVER_URL",
    "--token-file": "MCP_TOKEN_FILE",
    "--allowed-hosts": "MCP_ALLOWED_HOSTS",
    "--mode": "MCP_MODE",
    "--exec-timeout": "MCP_EXEC_TIMEOUT",
    "--output-max-chars": "MCP_OUTPUT_MAX_CHARS",
}


def parse_env(argv: list[str] | None) -> dict[str, str]:
    parser = argparse.ArgumentParser(
        prog="jupyterhub-mcp-sidecar",
        description="Per-user MCP server for a Jupyter server. Configured by environment "
        "(see docs/architecture.md); each flag overrides the variable named in its help.",
    )
    for flag, var in FLAGS.items():
        parser.add_argument(flag, dest=var, help=f"overrides ${var}")
    parser.add_argument("--log-level", default=os.environ.get("MCP_LOG_LEVEL", "info"))
    args = vars(parser.parse_args(argv))
    env = dict(os.environ)
    env.update({k: v for k, v in args.items() if k in FLAGS.values() and v is not None})
    env["MCP_LOG_LEVEL"] = args["log_level"]
    return env


def main(argv: list[str] | None = None) -> int:
    env = parse_env(argv)
    logging.basicConfig(
        level=env["MCP_LOG_LEVEL"].upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"jupyterhub-mcp-sidecar: {exc}", file=sys.stderr)
        return 2

    import uvicorn  # imported after the config check: a misconfigured start fails fast

    from .app import build_app

    app = build_app(settings)
    auth = "hub tokens" if settings.uses_hub_auth else "static token"
    # One line, never a token.
    log.info(
        "jupyterhub-mcp-sidecar listening on %s:%s, MCP at %s, Jupyter at %s, auth: %s, mode: %s",
        settings.host,
        settings.port,
        settings.mcp_path,
        settings.jupyter_base_url,
        auth,
        settings.mode,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
        proxy_headers=True,
        forwarded_allow_ips="*",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
