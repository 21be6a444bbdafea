"""Per-user hub tokens, pure core: which token a server gets, when to re-mint, what to revoke,
and the Secret that hands the token (plus a ready-to-use MCP client configuration) to the user.
The endpoint's path, URL, scope and client configurations are `endpoint.py`'s.

No I/O here. `hubclient.py` talks to the hub, `token_handlers.py` runs the plan against the hub and
the Kubernetes API.

What a token carries: only the MCP custom scope of the policy's tool tier on that one server
(`custom:mcp:<read|edit|execute>!server=<user>/<server>`, `endpoint.token_scopes`), so it opens the
MCP endpoint and not the Jupyter server's own API.

How the operator recognises its own tokens in the hub (after a restart, or when a pod is gone):
by the note, `jupyterhub-mcp sidecar access (<policy>) pod=<pod uid>`, together with a scope naming
that server (an MCP tier, or the `access:servers!server=` of tokens minted before MCP scopes: those
are replaced like any token that does not carry what the policy needs). The pod uid in the note
lets a pod deletion revoke exactly that pod's tokens even when its Secret has already been
garbage-collected.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mcp_operator.backoff import backoff_delay
from mcp_operator.constants import (
    ANN_EXPIRES_AT,
    ANN_HUB_API,
    ANN_POLICY,
    ANN_SERVER,
    ANN_TOKEN_ID,
    ANN_USER,
    FINALIZER,
)
from mcp_operator.endpoint import (
    MCP_TIERS,
    is_mcp_scope_of,
    mcp_http_config,
    mcp_remote_config,
    mcp_scope,
    server_scope,
)

# endpoint_url is re-exported: token_workers builds the Secret's URL through this module.
from mcp_operator.endpoint import endpoint_url as endpoint_url

NOTE_PREFIX = "jupyterhub-mcp sidecar access"
_NOTE_POD = re.compile(r" pod=([0-9A-Za-z-]+)$")

# Secret keys (files in the mounted directory, e.g. ~/.mcp/mcp.json).
KEY_TOKEN = "token"
KEY_TOKEN_ID = "token_id"
KEY_EXPIRES_AT = "expires_at"
KEY_URL = "url"
KEY_MCP_JSON = "mcp.json"
KEY_MCP_HTTP_JSON = "mcp-http.json"

# Secret annotations (what a restarted operator reads to know which token is live) and the
# finalizer that keeps a Secret until its token is revoked: in constants.py.


_SAFE = frozenset(string.ascii_lowercase + string.digits)
_MAX_NAME = 253  # a Secret name is a DNS subdomain


def escape_name(value: str) -> str:
    """KubeSpawner-style escaping into [a-z0-9-]: every other byte becomes `-<hex>`, so distinct
    user names never share a Secret (`a.b@x.org` -> `a-2eb-40x-2eorg`)."""
    return "".join(chr(b) if chr(b) in _SAFE else f"-{b:02x}" for b in value.encode())


def token_secret_name(user: str, server_name: str) -> str:
    """`mcp-token-<escaped user>[--<escaped server>]`; very long names end in a hash to stay unique."""
    name = f"mcp-token-{escape_name(user)}" + (f"--{escape_name(server_name)}" if server_name else "")
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name[: _MAX_NAME - 13]}-{digest}"
    return name


def token_note(policy: str, pod_uid: str) -> str:
    return f"{NOTE_PREFIX} ({policy}) pod={pod_uid}"


def note_pod_uid(note: str | None) -> str | None:
    """The pod uid in one of our notes, None for anyone else's token."""
    if not note or not note.startswith(NOTE_PREFIX):
        return None
    match = _NOTE_POD.search(note)
    return match.group(1) if match else None


def parse_hub_time(value: str | None) -> datetime | None:
    """Hub timestamps are ISO 8601 UTC with a trailing Z (`2026-01-02T03:04:05.678901Z`)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class HubToken:
    """A token as the hub lists it (never with its value)."""

    id: str
    scopes: frozenset[str]
    note: str | None
    expires_at: datetime | None

    @classmethod
    def from_model(cls, model: Mapping[str, Any]) -> HubToken:
        if not isinstance(model.get("id"), str):
            raise ValueError(f"hub token model without an id: keys {sorted(model)}")
        return cls(
            id=model["id"],
            scopes=frozenset(model.get("scopes") or ()),
            note=model.get("note"),
            expires_at=parse_hub_time(model.get("expires_at")),
        )

    def is_ours_for(self, user: str, server_name: str) -> bool:
        """One of our tokens (by note) for this server (by a scope naming it)."""
        return note_pod_uid(self.note) is not None and any(
            is_mcp_scope_of(s, user, server_name) or s == server_scope(user, server_name) for s in self.scopes
        )

    def fits(self, user: str, server_name: str, tier: str) -> bool:
        """Carries exactly the MCP tier wanted on this server, and no access:servers (the hub lists
        expanded scopes: an execute token also shows edit and read)."""
        held = [t for t in MCP_TIERS if mcp_scope(user, server_name, t) in self.scopes]
        return bool(held) and held[-1] == tier and not any(s.startswith("access:") for s in self.scopes)


@dataclass(frozen=True)
class MintedToken(HubToken):
    """A freshly minted token: the only place the value exists. Kept out of repr (and so logs)."""

    value: str = field(default="", repr=False)

    @classmethod
    def from_model(cls, model: Mapping[str, Any]) -> MintedToken:
        base = HubToken.from_model(model)
        value = model.get("token")
        if not isinstance(value, str) or not value:
            raise ValueError(f"hub answered a token request without a token (id {base.id})")
        if base.expires_at is None:
            raise ValueError(f"hub minted token {base.id} without an expiry")
        return cls(id=base.id, scopes=base.scopes, note=base.note, expires_at=base.expires_at, value=value)


@dataclass(frozen=True)
class LiveToken:
    """What a token Secret says is live: id and expiry, from its annotations."""

    id: str
    expires_at: datetime


def live_token(secret: Mapping[str, Any] | None, pod_uid: str) -> LiveToken | None:
    """The token this pod's Secret holds. A Secret still owned by an earlier pod of the same server
    (not yet garbage-collected) holds nothing for this pod: its token is a stray to replace."""
    if not secret:
        return None
    meta = secret.get("metadata") or {}
    if not any(ref.get("uid") == pod_uid for ref in meta.get("ownerReferences") or ()):
        return None
    annotations = meta.get("annotations") or {}
    token_id = annotations.get(ANN_TOKEN_ID)
    try:
        expires_at = parse_hub_time(annotations.get(ANN_EXPIRES_AT))
    except ValueError:
        expires_at = None  # a hand-edited annotation: treat the Secret as holding nothing usable
    if not token_id or expires_at is None:
        return None
    return LiveToken(token_id, expires_at)


def needs_rotation(now: datetime, expires_at: datetime, rotate_before_seconds: int) -> bool:
    return (expires_at - now).total_seconds() <= rotate_before_seconds


def hub_check_due(now: datetime, live: LiveToken | None, rotate_before_seconds: int) -> bool:
    """Whether a periodic check must ask the hub at all. A Secret holding a token that is not yet
    due for rotation needs nothing: 300 servers then cost the hub nothing between rotations."""
    return live is None or needs_rotation(now, live.expires_at, rotate_before_seconds)


# Longest wait between two attempts at a revocation: a Secret held Terminating by our finalizer
# blocks the next token Secret of the same user server, so the hub's return is noticed soon.
REVOCATION_BACKOFF_CAP = 60.0


def revocation_delay(now: datetime, expires_at: datetime | None, retry: int, base: float) -> float | None:
    """How long to wait before trying a failed revocation again; None once the token has expired
    (the hub no longer accepts it: nothing left to revoke). Never sleeps past the expiry by much."""
    if expires_at is not None and now >= expires_at:
        return None
    delay = backoff_delay(retry, base, cap=REVOCATION_BACKOFF_CAP)
    if expires_at is not None:
        delay = min(delay, (expires_at - now).total_seconds() + 1.0)
    return delay


@dataclass(frozen=True)
class TokenPlan:
    """What to do for one server. Order matters: mint, write the Secret, *then* revoke, so the user
    always holds a working token and at most two are live for the length of one rotation."""

    mint: bool
    revoke: tuple[str, ...]
    reason: str


def plan_tokens(
    now: datetime,
    live: LiveToken | None,
    hub_tokens: Iterable[HubToken],
    server: tuple[str, str],
    tier: str,
    rotate_before_seconds: int,
) -> TokenPlan:
    """Decide from the Secret's view (`live`) and the hub's view (`hub_tokens` of the user).

    Every token of ours for this server that the Secret does not hold is a stray (a restart between
    mint and Secret write, or a previous pod of the same server) and is revoked. A live token that
    does not carry exactly the MCP `tier` the policy needs (the mode changed, or it predates MCP
    scopes) is replaced.
    """
    user, server_name = server
    ours = [t for t in hub_tokens if t.is_ours_for(user, server_name)]
    by_id = {t.id: t for t in ours}
    if live is None:
        reason, mint = "no token yet", True
    elif live.id not in by_id:
        reason, mint = f"token {live.id} is no longer known to the hub", True
    elif not by_id[live.id].fits(user, server_name, tier):
        wanted = mcp_scope(user, server_name, tier)
        reason, mint = f"token {live.id} does not carry exactly {wanted}: replacing it", True
    elif needs_rotation(now, live.expires_at, rotate_before_seconds):
        reason, mint = f"token {live.id} expires at {format_time(live.expires_at)}: rotating", True
    else:
        reason, mint = f"token {live.id} is valid until {format_time(live.expires_at)}", False
    keep = None if mint or live is None else live.id
    revoke = tuple(sorted(t.id for t in ours if t.id != keep))
    return TokenPlan(mint=mint, revoke=revoke, reason=reason)


def tokens_of_pod(hub_tokens: Iterable[HubToken], pod_uid: str) -> list[str]:
    """Ids of our tokens minted for this pod: what its deletion revokes."""
    return sorted(t.id for t in hub_tokens if note_pod_uid(t.note) == pod_uid)


def token_secret(
    *,
    name: str,
    pod: Mapping[str, Any],
    policy: str,
    server_name: str,
    user: str,
    token: MintedToken,
    url: str,
    labels: Mapping[str, str],
    hub_api_url: str = "",
) -> dict[str, Any]:
    """The Secret manifest, owned by the pod so the API server collects it with the pod."""
    meta = pod["metadata"]
    expires_at = format_time(token.expires_at) if token.expires_at else ""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": dict(labels),
            "finalizers": [FINALIZER],
            "annotations": {
                ANN_TOKEN_ID: token.id,
                ANN_EXPIRES_AT: expires_at,
                ANN_POLICY: policy,
                ANN_USER: user,
                ANN_SERVER: server_name,
                ANN_HUB_API: hub_api_url,
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
            ],
        },
        "stringData": {
            KEY_TOKEN: token.value,
            KEY_TOKEN_ID: token.id,
            KEY_EXPIRES_AT: expires_at,
            KEY_URL: url,
            KEY_MCP_JSON: json.dumps(mcp_remote_config(url, token.value, server_name), indent=2) + "\n",
            KEY_MCP_HTTP_JSON: json.dumps(mcp_http_config(url, token.value, server_name), indent=2) + "\n",
        },
    }


# --- which server a pod is ---------------------------------------------------------------------


@dataclass(frozen=True)
class UserServer:
    """One injected user server, read from its pod (`token_handlers.user_server`)."""

    namespace: str
    pod_name: str
    pod_uid: str
    user: str
    server_name: str
    policy: str
    # What the hub handed the pod: its endpoint path (`<JUPYTERHUB_SERVICE_PREFIX>mcp`, with the
    # hub's base URL in it) and its hub API (`JUPYTERHUB_API_URL`). Empty: not on the pod.
    mcp_path: str = ""
    hub_api_url: str = ""

    def token_scopes(self, tier: str) -> list[str]:
        """What this server's token carries: only the MCP scope of one tier on this server."""
        return [mcp_scope(self.user, self.server_name, tier)]

    def pod_reference(self) -> dict[str, Any]:
        """Enough of the pod for an Event's involvedObject."""
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.pod_name, "namespace": self.namespace, "uid": self.pod_uid},
        }
