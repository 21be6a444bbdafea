"""Per-MCP-session defaults: which notebook ``open_notebook`` chose for *this* session only.

Keyed by the ``Mcp-Session-Id`` the SDK assigned; never global, so two agents never share a
"current notebook". Bounded (least recently used dropped) so abandoned sessions cannot grow it.
"""

from __future__ import annotations

from collections import OrderedDict

from .jupyter.errors import JupyterError


class SessionDefaults:
    def __init__(self, max_sessions: int = 10_000) -> None:
        self._paths: OrderedDict[str, str] = OrderedDict()
        self._max = max_sessions

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
