"""Pure token core: scope, note, rotation plan, Secret and client configuration."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from mcp_operator import tokens as t
from mcp_operator.backoff import backoff_delay
from mcp_operator.constants import ANN_INJECTED
from mcp_operator.endpoint import mcp_scope, server_scope
from mcp_operator.names import label_value
from mcp_operator.policy import Policy, PolicyError
from mcp_operator.token_workers import TokenReconciler, user_server

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SCOPE = mcp_scope("alice", "", "execute")
SERVER = ("alice", "")
# What the hub lists for an execute token: every tier it implies.
EXECUTE = frozenset(mcp_scope("alice", "", tier) for tier in ("read", "edit", "execute"))
POD_UID = "0b7c5c0e-1111-4a4a-9999-123456789abc"


def hub_token(
    token_id: str,
    *,
    scope: str | frozenset[str] = EXECUTE,
    pod_uid: str = POD_UID,
    note: str | None = None,
    expires_in: int = 3600,
) -> t.HubToken:
    return t.HubToken(
        id=token_id,
        scopes=frozenset({scope}) if isinstance(scope, str) else scope,
        note=note if note is not None else t.token_note("default", pod_uid),
        expires_at=NOW + timedelta(seconds=expires_in),
    )


def test_note_round_trip_and_foreign_notes() -> None:
    note = t.token_note("team-a", POD_UID)
    assert note.startswith("jupyterhub-mcp sidecar access (team-a)")
    assert t.note_pod_uid(note) == POD_UID
    assert t.note_pod_uid("Requested via api by service foo") is None
    assert t.note_pod_uid(None) is None
    assert t.note_pod_uid(t.NOTE_PREFIX + " (p) without pod") is None


def test_hub_model_parsing() -> None:
    model = {
        "id": "a12",
        "kind": "api_token",
        "scopes": [SCOPE],
        "note": t.token_note("p", POD_UID),
        "expires_at": "2026-01-01T13:00:00.123456Z",
        "token": "secret-value",
    }
    listed = t.HubToken.from_model(model)
    assert listed.expires_at == datetime(2026, 1, 1, 13, 0, 0, 123456, tzinfo=UTC)
    assert listed.is_ours_for("alice", "")
    assert not listed.is_ours_for("alice", "other") and not listed.is_ours_for("alice2", "")
    # tokens minted before MCP scopes are still recognised as ours (and so replaced, then revoked)
    legacy = t.HubToken.from_model({**model, "scopes": [server_scope("alice", "")]})
    assert legacy.is_ours_for("alice", "") and not legacy.fits("alice", "", "execute")
    minted = t.MintedToken.from_model(model)
    assert minted.value == "secret-value"
    assert "secret-value" not in repr(minted)
    with pytest.raises(ValueError, match="without a token"):
        t.MintedToken.from_model({**model, "token": None})
    with pytest.raises(ValueError, match="without an expiry"):
        t.MintedToken.from_model({**model, "expires_at": None})
    with pytest.raises(ValueError, match="without an id"):
        t.HubToken.from_model({"scopes": []})


def token_policy(ttl: int, rotate_before: int) -> Policy:
    spec = {"tokens": {"issue": True, "ttlSeconds": ttl, "rotateBeforeSeconds": rotate_before}}
    return Policy.from_object({"metadata": {"name": "p"}, "spec": spec})


def test_timing_validation() -> None:
    """Part of the policy's validation: a rotate-before window not shorter than the TTL would re-mint
    at every check."""
    token_policy(3600, 600)
    token_policy(3600, 0)
    with pytest.raises(PolicyError, match="shorter than"):
        token_policy(600, 600)
    with pytest.raises(PolicyError, match="positive"):
        token_policy(0, 0)


def test_rotation_boundary() -> None:
    expires = NOW + timedelta(seconds=600)
    assert not t.needs_rotation(NOW, expires, 599)
    assert t.needs_rotation(NOW, expires, 600)
    assert t.needs_rotation(expires + timedelta(seconds=1), expires, 0)


def test_plan_first_mint() -> None:
    plan = t.plan_tokens(NOW, None, [], SERVER, "execute", 600)
    assert plan.mint and plan.revoke == ()


def test_plan_keeps_a_fresh_token_and_revokes_strays() -> None:
    live = t.LiveToken("a1", NOW + timedelta(seconds=3600))
    listed = [
        hub_token("a1"),
        hub_token("a2"),  # minted, then the operator died before writing the Secret
        hub_token("a3", pod_uid="earlier-pod-uid"),  # an earlier pod of the same server
        hub_token("a4", scope=mcp_scope("alice", "lab")),  # another server: not ours to touch
        hub_token("a5", note="Requested via api"),  # the user's own token
    ]
    plan = t.plan_tokens(NOW, live, listed, SERVER, "execute", 600)
    assert not plan.mint
    assert plan.revoke == ("a2", "a3")


def test_plan_rotates_inside_the_window_and_revokes_the_old_after() -> None:
    live = t.LiveToken("a1", NOW + timedelta(seconds=300))
    plan = t.plan_tokens(NOW, live, [hub_token("a1", expires_in=300)], SERVER, "execute", 600)
    assert plan.mint and plan.revoke == ("a1",)
    assert "rotating" in plan.reason


def test_plan_remints_when_the_hub_forgot_the_token() -> None:
    live = t.LiveToken("a1", NOW + timedelta(seconds=3600))
    plan = t.plan_tokens(NOW, live, [], SERVER, "execute", 600)
    assert plan.mint and plan.revoke == ()
    assert "no longer known" in plan.reason


@pytest.mark.parametrize(
    ("held", "tier"),
    [
        (frozenset({server_scope("alice", "")}), "execute"),  # minted before MCP scopes
        (EXECUTE, "edit"),  # the policy's mode went down to edit
        (frozenset({mcp_scope("alice", "", "read")}), "execute"),  # and back up
        (EXECUTE | {server_scope("alice", "")}, "execute"),  # MCP, but also the whole server
    ],
)
def test_plan_replaces_a_token_that_does_not_carry_exactly_the_tier(held: frozenset[str], tier: str) -> None:
    live = t.LiveToken("a1", NOW + timedelta(seconds=3600))
    plan = t.plan_tokens(NOW, live, [hub_token("a1", scope=held)], SERVER, tier, 600)
    assert plan.mint and plan.revoke == ("a1",)
    assert f"custom:mcp:{tier}!server=alice/" in plan.reason


def test_live_token_only_from_this_pods_secret() -> None:
    secret = {
        "metadata": {
            "annotations": {t.ANN_TOKEN_ID: "a7", t.ANN_EXPIRES_AT: "2026-01-01T13:00:00Z"},
            "ownerReferences": [{"kind": "Pod", "uid": POD_UID}],
        }
    }
    assert t.live_token(secret, POD_UID) == t.LiveToken("a7", datetime(2026, 1, 1, 13, tzinfo=UTC))
    assert t.live_token(secret, "another-pod") is None
    assert t.live_token(None, POD_UID) is None
    bad_expiry = {t.ANN_TOKEN_ID: "a7", t.ANN_EXPIRES_AT: "x"}
    broken = {"metadata": {**secret["metadata"], "annotations": bad_expiry}}
    assert t.live_token(broken, POD_UID) is None


def test_tokens_of_pod() -> None:
    listed = [hub_token("a1"), hub_token("a2", pod_uid="other"), hub_token("a3", note="mine")]
    assert t.tokens_of_pod(listed, POD_UID) == ["a1"]


def test_secret_manifest() -> None:
    pod = {"metadata": {"name": "jupyter-alice", "namespace": "hub", "uid": POD_UID}}
    minted = t.MintedToken(
        id="a9",
        scopes=frozenset({SCOPE}),
        note="n",
        expires_at=datetime(2026, 1, 1, 13, tzinfo=UTC),
        value="tok-123",
    )
    url = "https://mcp.example.org/user/alice/mcp"
    secret = t.token_secret(
        name="mcp-token-alice",
        pod=pod,
        policy="default",
        server_name="",
        user="alice",
        token=minted,
        url=url,
        labels={"a": "b"},
    )
    meta = secret["metadata"]
    assert meta["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "jupyter-alice", "uid": POD_UID}
    ]
    assert meta["annotations"][t.ANN_TOKEN_ID] == "a9"
    assert meta["annotations"][t.ANN_USER] == "alice" and meta["annotations"][t.ANN_SERVER] == ""
    assert meta["annotations"][t.ANN_EXPIRES_AT] == "2026-01-01T13:00:00Z"
    assert meta["finalizers"] == [t.FINALIZER]  # held until the token is revoked or expired
    assert "tok-123" not in json.dumps(meta)  # the value lives only in the data
    data = secret["stringData"]
    assert data["token"] == "tok-123" and data["url"] == url and data["token_id"] == "a9"
    remote = json.loads(data["mcp.json"])["mcpServers"]["jupyterhub"]
    assert remote["args"] == ["-y", "mcp-remote", url, "--header", "Authorization:${AUTH_HEADER}"]
    assert remote["env"] == {"AUTH_HEADER": "Bearer tok-123"}
    direct = json.loads(data["mcp-http.json"])["mcpServers"]["jupyterhub"]
    assert direct == {"type": "http", "url": url, "headers": {"Authorization": "Bearer tok-123"}}
    # and the live token read back from what we wrote
    assert t.live_token(secret, POD_UID) == t.LiveToken("a9", minted.expires_at)


def test_secret_names_are_dns_safe_and_distinct() -> None:
    assert t.token_secret_name("alice", "") == "mcp-token-alice"
    assert t.token_secret_name("a.b@x.org", "") == "mcp-token-a-2eb-40x-2eorg"
    assert t.token_secret_name("Alice", "lab") == "mcp-token--41lice--lab"
    # "-" only ever starts an escape, so user/server can never be confused with another pair
    assert t.token_secret_name("alice", "ab") != t.token_secret_name("alice\xab", "")
    long = t.token_secret_name("u" * 300, "")
    assert len(long) == 253 and long != t.token_secret_name("u" * 301, "")


def test_user_server_from_pod() -> None:
    pod = {
        "metadata": {
            "name": "jupyter-a-2eb",
            "namespace": "hub",
            "uid": POD_UID,
            "annotations": {
                ANN_INJECTED: "team-a/3",
                "hub.jupyter.org/username": "a.b",
                "hub.jupyter.org/servername": "lab",
            },
        }
    }
    server = user_server(pod)
    # no env on this pod: the default path, no hub API of its own
    assert server == t.UserServer(
        "hub", "jupyter-a-2eb", POD_UID, "a.b", "lab", "team-a", "/user/a.b/lab/mcp", ""
    )
    assert server.token_scopes("read") == ["custom:mcp:read!server=a.b/lab"]
    assert user_server({"metadata": {"name": "x", "namespace": "hub", "uid": "u"}}) is None
    not_injected = {"metadata": {**pod["metadata"], "annotations": {"hub.jupyter.org/username": "a.b"}}}
    assert user_server(not_injected) is None


def test_periodic_check_asks_the_hub_only_when_due() -> None:
    fresh = t.LiveToken("a1", NOW + timedelta(seconds=3600))
    assert not t.hub_check_due(NOW, fresh, 600)
    assert t.hub_check_due(NOW + timedelta(seconds=3000), fresh, 600)
    assert t.hub_check_due(NOW, None, 600)


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_delay(n, 10) for n in range(4)] == [10, 20, 40, 80]
    assert backoff_delay(10, 10) == 300
    assert backoff_delay(10_000, 10, cap=60) == 60


def test_revocation_is_retried_until_the_token_expires() -> None:
    expires = NOW + timedelta(seconds=50)
    assert t.revocation_delay(NOW, expires, 0, 10) == 10
    assert t.revocation_delay(NOW, expires, 1, 10) == 20
    assert t.revocation_delay(NOW, expires, 3, 10) == 51  # not far past the expiry
    assert t.revocation_delay(NOW + timedelta(seconds=50), expires, 0, 10) is None  # expired: done
    # expiry unknown (or a day away): capped backoff, forever; the cap is a minute, not five, as a
    # Secret held by our finalizer blocks the next token Secret of the same user server
    assert t.revocation_delay(NOW, None, 20, 10) == 60
    assert t.revocation_delay(NOW, NOW + timedelta(days=1), 20, 10) == 60


# --- the reconciler with a hub and an API server that behave like the real ones -----------------

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class FakeHub:
    api_url = "http://hub:8081/hub/api/"

    def __init__(self) -> None:
        self.minted: list[str] = []
        self.revoked: list[str] = []

    async def list_tokens(self, user: str) -> list[t.HubToken]:
        return []

    async def mint(self, user: str, *, scopes: list[str], expires_in: int, note: str) -> t.MintedToken:
        token_id = f"a{len(self.minted)}"
        self.minted.append(token_id)
        expires = NOW + timedelta(seconds=expires_in)
        return t.MintedToken(id=token_id, scopes=frozenset(scopes), note=note, expires_at=expires, value="v")

    async def revoke(self, user: str, token_id: str) -> bool:
        self.revoked.append(token_id)
        return True


class FakeKube:
    """Validates label values the way the API server does (422 otherwise)."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.secrets.get(name)

    async def write_secret(self, manifest: dict[str, Any], existing: dict[str, Any] | None) -> None:
        for value in manifest["metadata"].get("labels", {}).values():
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                raise ApiException(status=422, reason=f"Invalid value: {value!r}: must be no more than 63")
        self.secrets[manifest["metadata"]["name"]] = manifest

    async def set_policy_condition(self, *args: Any, **kwargs: Any) -> None:
        return None


class SilentEvents:
    def info(self, *args: Any, **kwargs: Any) -> None: ...
    def warn(self, *args: Any, **kwargs: Any) -> None: ...


async def test_a_pod_name_longer_than_a_label_value_gets_its_secret() -> None:
    """Pod names may be longer than 63 characters (KubeSpawner's name template is configurable):
    the Secret's pod label is hash-fitted, so the first write succeeds and no token is minted only
    to be revoked again."""
    pod_name = "jupyter-" + "a" * 62
    assert len(pod_name) == 70
    server = t.UserServer("hub", pod_name, POD_UID, "alice", "", "default")
    hub, kube = FakeHub(), FakeKube()
    reconciler = TokenReconciler(hub, kube, hub_public_url=None, clock=lambda: NOW, events=SilentEvents())  # type: ignore[arg-type]
    policy = Policy.from_object({"metadata": {"name": "default"}, "spec": {"tokens": {"issue": True}}})
    plan = await reconciler.ensure(server, policy)
    assert plan is not None and plan.mint
    (secret,) = kube.secrets.values()
    assert secret["metadata"]["labels"]["mcp.jupyterhub.org/pod"] == label_value(pod_name)
    assert (hub.minted, hub.revoked) == (["a0"], [])
