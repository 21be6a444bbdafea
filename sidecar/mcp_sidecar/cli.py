"""``jupyterhub-mcp-sidecar``: configured by environment, flags mirror it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from .config import ConfigError, Settings

log = logging.getLogger("mcp_sidecar")
MAX_HEADER_BYTES = 64 * 1024  # a request head larger than this is refused (h11's default is 16 KiB)

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


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, plus: a connection whose request headers are not complete within
    ``seconds`` (of connecting, or of the previous response) is closed. uvicorn has no such limit
    (its keep-alive timer starts only after a response), so 300 connections dripping a header
    line were all held open."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            # IDLE: h11 has not seen a whole request head yet (a partial one does not count).
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm()  # the next request's head has the same time to arrive

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for this sidecar: slow or idle connections are not held."""
    return dict(
        http=header_timeout_protocol(settings.header_timeout),
        timeout_keep_alive=settings.keep_alive_timeout,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


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
        **server_options(settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
