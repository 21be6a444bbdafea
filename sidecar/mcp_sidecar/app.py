"""The ASGI app: MCP Streamable HTTP at ``${prefix}mcp`` behind auth, plus health and metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import __version__, arguments, resource_metadata
from .auth import AuthMiddleware, SessionOwners
from .config import Settings
from .guard import Guard
from .metrics import render as render_metrics
from .sessions import SessionManager
from .toolpolicy import ALL_TOOLS
from .tools import NotebookTools

READY_TIMEOUT = 2.0  # readiness must never hang on the Jupyter server (KubeSpawner waits on it)

INSTRUCTIONS = (
    "Notebooks of one Jupyter server. Every notebook tool takes `path` (relative to the server "
    "root); open_notebook sets a default for this session only. Cells are named by index or id. "
    "Long cells return an execution_id: call get_execution to wait for them."
)


class PolicedMCPServer(MCPServer):
    """Tools the policy forbids are not registered, so not listed; a call to one anyway is refused
    by the guard (audited and counted as "refused", naming the mode or list) instead of the SDK's
    bare "Unknown tool". Arguments are checked here, once for every tool, before any tool runs:
    a non-finite number is refused with the argument's name (``arguments.non_finite``)."""

    def __init__(self, tools: NotebookTools, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notebook_tools = tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> CallToolResult | InputRequiredResult:
        # The policy is fixed at start: what it does not list was not registered.
        listed = self.notebook_tools.guard.is_listed(name)
        if name in ALL_TOOLS and not listed and context is not None:
            return await self.notebook_tools.refuse(context, name, arguments)
        problem = self.argument_problem(name, arguments)
        if problem is not None and context is not None:
            return await self.notebook_tools.refuse(context, name, arguments, problem=problem)
        return await super().call_tool(name, arguments, context)

    def argument_problem(self, name: str, raw: dict[str, Any]) -> str | None:
        """What is wrong with the arguments of a listed tool, after the SDK's own coercion."""
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            return None  # unknown: the SDK says so
        try:
            validated = tool.fn_metadata.validate_arguments(raw)
        except ValidationError as e:
            # Said here, not by the SDK: its own answer comes before the guard, so these calls went
            # unaudited and uncounted.
            return arguments.invalid(name, e)
        return arguments.non_finite(validated)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """The SDK's Host/Origin check, from MCP_ALLOWED_HOSTS ("*" turns it off, e.g. behind an Ingress)."""
    if "*" in settings.allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = list(settings.allowed_hosts)
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def build_app(settings: Settings, guard: Guard | None = None) -> Starlette:
    guard = guard or Guard(settings)
    tools = NotebookTools(settings, guard)
    mcp = PolicedMCPServer(
        tools, name="jupyterhub-mcp", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    tools.register(mcp)
    # Sessions on, SSE responses so progress notifications flow. Built here rather than by
    # mcp.streamable_http_app(), which would build the SDK's plain manager.
    session_manager = SessionManager(
        mcp._lowlevel_server,
        json_response=False,
        stateless=False,
        security_settings=transport_security(settings),
        session_idle_timeout=settings.session_idle_timeout,
        max_sessions=settings.max_sessions,
    )
    owners = SessionOwners(is_open=session_manager.is_open)
    # What the sidecar keeps per session goes with the session.
    session_manager.on_session_end(owners.forget)
    session_manager.on_session_end(tools.sessions.forget)
    mcp_endpoint = AuthMiddleware(StreamableHTTPASGIApp(session_manager), settings, owners)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        ok, reason = await tools.server.ready(READY_TIMEOUT)
        return JSONResponse({"ready": ok, "reason": reason}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with session_manager.run():
            try:
                yield
            finally:
                await tools.aclose()
                await guard.aclose()
                await mcp_endpoint.aclose()

    routes = [
        # Both spellings route to MCP: no 307 trailing-slash redirect for clients to trip on.
        Route(settings.mcp_path, endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"]),
        Route(settings.mcp_path + "/", endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    if resource_metadata.advertised(settings):
        assert settings.resource_url is not None
        document = resource_metadata.document(settings.resource_url, settings.authorization_servers)

        async def protected_resource(request: Request) -> Response:
            # Public and read by browser-based clients too (the MCP Inspector): any origin may read it.
            return JSONResponse(document, headers={"Access-Control-Allow-Origin": "*"})

        routes.append(Route(resource_metadata.metadata_path(settings), protected_resource, methods=["GET"]))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.tools = tools
    app.state.mcp = mcp
    app.state.session_manager = session_manager
    app.state.session_owners = owners
    return app
