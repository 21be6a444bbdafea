"""``jupyterhub-mcp-authserver``: the hub's MCP authorization server (run by the hub as a service)."""

from __future__ import annotations

import logging
import sys

from .config import ConfigError, Settings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"jupyterhub-mcp-authserver: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from .app import build_app

    uvicorn.run(
        build_app(settings),
        host=settings.listen_host,
        port=settings.listen_port,
        log_level="warning",
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
