"""MCP sessions: how long they live, how many there may be, and what the sidecar keeps for each.

``SessionManager`` is the SDK's stateful session manager plus two things. Whoever keeps state per
session (its owner, its default notebook) hears when a session ends, however it ends (DELETE, idle
expiry, a crash, eviction), so that state lives exactly as long as the session. And at the session
cap the oldest idle session is closed to make room, never a busy one (a request in flight or an
open GET stream); when every session is busy the SDK answers the new one 503.

``SessionDefaults``: which notebook ``open_notebook`` chose for *this* session only, keyed by the
``Mcp-Session-Id`` the SDK assigned; never global, so two agents never share a "current notebook".
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from .jupyter.errors import JupyterError


def idle_deadline(transport: StreamableHTTPServerTransport) -> float | None:
    """When the SDK would expire this session for idleness, or None while it is busy.

    The SDK holds the deadline at infinity while any request (an open GET stream included) is in
    flight and sets it to "last request ended + idle timeout" after, so an earlier deadline is an
    older idle session. A session whose server task has not started yet (no scope) is opening: busy.
    A session already being expired counts as the oldest idle one."""
    scope = transport.idle_scope
    if scope is None:
        return None
    if scope.cancel_called:
        return -math.inf
    return scope.deadline if math.isfinite(scope.deadline) else None


def oldest_idle(deadlines: Mapping[str, float | None]) -> str | None:
    """Pure: the session to close first (earliest idle deadline), None when every one is busy."""
    idle = [(deadline, session_id) for session_id, deadline in deadlines.items() if deadline is not None]
    return min(idle)[1] if idle else None


class SessionManager(StreamableHTTPSessionManager):
    """See the module docstring. Hooks the SDK's own admission (``_admit_session``, called under
    its creation lock) and discard (``_discard_session``, the one place a session leaves its map)."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._on_end: list[Callable[[str], None]] = []
        self.evicted = 0

    def on_session_end(self, callback: Callable[[str], None]) -> None:
        """``callback(session_id)`` once a session is gone (may be called twice for one session)."""
        self._on_end.append(callback)

    def is_open(self, session_id: str) -> bool:
        return session_id in self._server_instances

    @property
    def open_sessions(self) -> int:
        return len(self._server_instances)

    def _ended(self, session_id: str) -> None:
        for callback in self._on_end:
            callback(session_id)

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        # Forgotten before the SDK's own pop (no await between): no request sees the one without the other.
        self._ended(session_id)
        await super()._discard_session(session_id, transport)

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            self._close_oldest_idle()
        return super()._admit_session(requestor)

    def _close_oldest_idle(self) -> None:
        victim = oldest_idle({sid: idle_deadline(t) for sid, t in self._server_instances.items()})
        if victim is None:
            return  # every session is busy: the SDK refuses the new one (503), none is cut off
        transport = self._server_instances.pop(victim)
        self._session_owners.pop(victim, None)
        self._ended(victim)
        self.evicted += 1
        # The SDK's own idle expiry: the session's server task leaves its loop and, in its finally,
        # discards and terminates the transport (so its id answers 404 from now on).
        assert transport.idle_scope is not None
        transport.idle_scope.cancel()


class SessionDefaults:
    """Each session's default notebook. Forgotten with the session (``SessionManager``); also
    bounded (least recently used dropped) as a second line."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        self._paths: OrderedDict[str, str] = OrderedDict()
        self._max = max_sessions

    def __len__(self) -> int:
        return len(self._paths)

    def set(self, session_id: str | None, path: str) -> None:
        if not session_id:
            raise JupyterError(
                "open_notebook needs an MCP session (Mcp-Session-Id), and this client has none: "
                "stateless clients pass path= to every tool instead"
            )
        self._paths[session_id] = path
        self._paths.move_to_end(session_id)
        while len(self._paths) > self._max:
            self._paths.popitem(last=False)

    def get(self, session_id: str | None) -> str | None:
        if session_id and session_id in self._paths:
            self._paths.move_to_end(session_id)
            return self._paths[session_id]
        return None

    def resolve(self, session_id: str | None, path: str | None) -> str:
        """The explicit ``path`` if given, else this session's default, else a clear error."""
        if path:
            return path
        default = self.get(session_id)
        if default:
            return default
        if session_id:
            raise JupyterError(
                "no path given and this session has no open notebook: pass path= or call open_notebook"
            )
        raise JupyterError(
            "no path given: this client has no MCP session, so there is no default notebook; pass path="
        )

    def forget(self, session_id: str) -> None:
        self._paths.pop(session_id, None)
