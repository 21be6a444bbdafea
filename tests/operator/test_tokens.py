"""Per-user hub tokens against a real JupyterHub and a real kube-apiserver (issue 6).

The hub here is a real JupyterHub process (+ configurable-http-proxy, tests/harness/hub.py)
registered with the service the README documents: role scopes `["tokens"]` and nothing else, so
these tests also prove that this is enough. It is this module's own (not the shared `jupyterhub`
fixture) because the tests need exactly that service role, and stop and start it.

The operator runs as the real `jupyterhub-mcp-operator` subprocess without its webhook; pods are
created already annotated the way the webhook annotates them.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from mcp_operator import constants, tokens
from mcp_operator.constants import ANN_INJECTED
from mcp_operator.endpoint import mcp_scope
from mcp_operator.hubclient import HubClient, HubRefused, HubUnavailable

from tests.fixtures.tools import eventually, free_port
from tests.harness.hub import RunningHub
from tests.harness.operator import OperatorProcess, create_policy

WAIT = 90.0  # seconds; generous for a loaded two-core machine
SERVICE = "mcp-operator"

wait_until = partial(eventually, timeout=WAIT)


@pytest.fixture(scope="module")
def token_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    # The service registration the README documents: the narrowest role that works, `tokens`.
    hub = RunningHub(
        tmp_path_factory.mktemp("token-hub"),
        users=("alice", "bob"),
        service=SERVICE,
        service_scopes=("tokens",),
    )
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
async def hub_client(token_hub: RunningHub) -> Any:
    async with HubClient(token_hub.api_url, token_hub.service_token, backoff=0.2) as hub:
        yield hub


# --- the hub client against the real hub -------------------------------------------------------


@pytest.mark.hub
async def test_minted_token_reaches_only_its_server(
    token_hub: RunningHub, hub_client: HubClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    server = tokens.UserServer("ns", "jupyter-alice", "pod-uid-1", "alice", "", "p1")
    note = tokens.token_note("p1", "pod-uid-1")
    minted = await hub_client.mint("alice", scopes=server.token_scopes("edit"), expires_in=300, note=note)

    me = token_hub.whoami(minted.value)
    assert me.status_code == 200 and me.json()["name"] == "alice"
    granted = set(me.json()["scopes"])
    # narrow: MCP on this one server only (edit implies read), no access:servers, nothing beyond
    # reading her own name/groups
    mcp = {"custom:mcp:edit!server=alice/", "custom:mcp:read!server=alice/"}
    assert granted <= mcp | {"read:users:name!user=alice", "read:users:groups!user=alice"}
    assert mcp <= granted

    listed = {t.id: t for t in await hub_client.list_tokens("alice")}
    assert listed[minted.id].note == note and listed[minted.id].is_ours_for("alice", "")
    assert listed[minted.id].fits("alice", "", "edit") and not listed[minted.id].fits("alice", "", "execute")
    assert minted.expires_at is not None and listed[minted.id].expires_at == minted.expires_at

    assert await hub_client.revoke("alice", minted.id) is True
    assert token_hub.whoami(minted.value).status_code == 403
    assert await hub_client.revoke("alice", minted.id) is False  # idempotent
    assert minted.value not in caplog.text


@pytest.mark.hub
async def test_named_server_scope_and_refusals(hub_client: HubClient) -> None:
    named = await hub_client.mint("bob", scopes=[mcp_scope("bob", "lab")], expires_in=60, note="t")
    assert "custom:mcp:execute!server=bob/lab" in named.scopes
    await hub_client.revoke("bob", named.id)
    # the hub refuses scopes the owner does not hold: alice cannot get a token for bob's server
    with pytest.raises(HubRefused) as refused:
        await hub_client.mint("alice", scopes=[mcp_scope("bob", "")], expires_in=60, note="t")
    assert refused.value.status == 400 and "not held by" in str(refused.value)
    assert "custom_scopes" in str(refused.value)  # and says where the MCP scopes are configured
    with pytest.raises(HubRefused) as unknown:
        await hub_client.list_tokens("nobody-here")
    assert unknown.value.status == 404


@pytest.mark.hub
def test_hub_filters_custom_scopes_to_one_server(token_hub: RunningHub) -> None:
    """A `!server=` filter on a custom scope is kept by the hub, and edit implies read on that
    server only (subscopes inherit the filter); no access:servers comes with it."""
    token, _ = token_hub.mint_token("alice", scopes=[mcp_scope("alice", "", "edit")])
    scopes = set(token_hub.whoami(token).json()["scopes"])
    assert {"custom:mcp:edit!server=alice/", "custom:mcp:read!server=alice/"} <= scopes
    assert not any(s.startswith("custom:mcp:execute") for s in scopes)
    assert not any(s.startswith("access:") for s in scopes), scopes


@pytest.mark.hub
def test_user_role_grants_mcp_scopes_on_own_servers_only(token_hub: RunningHub) -> None:
    """`custom:mcp:execute!user` in the user role: alice may get a token for her own (named) server,
    never for bob's."""
    token, _ = token_hub.mint_token("alice", scopes=[mcp_scope("alice", "lab", "execute")])
    assert "custom:mcp:execute!server=alice/lab" in token_hub.whoami(token).json()["scopes"]
    refused = token_hub.api("POST", "/users/alice/tokens", json={"scopes": [mcp_scope("bob", "", "read")]})
    assert refused.status_code == 400 and "not held by User alice" in refused.text, refused.text


@pytest.mark.hub
async def test_wrong_service_token_is_refused_without_retries(token_hub: RunningHub) -> None:
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    async with HubClient(token_hub.api_url, "not-the-token", sleep=record) as hub:
        with pytest.raises(HubRefused) as refused:
            await hub.list_tokens("alice")
    assert refused.value.status == 403 and sleeps == []
    assert "not-the-token" not in str(refused.value)


async def test_unreachable_hub_is_retried_with_backoff() -> None:
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    # A real connection to a loopback port where nothing listens: refused every time.
    async with HubClient(
        f"http://127.0.0.1:{free_port()}/hub/api", "x", attempts=4, backoff=0.5, max_backoff=1.5, sleep=record
    ) as hub:
        with pytest.raises(HubUnavailable, match="after 4 attempts"):
            await hub.mint("alice", scopes=["access:servers!server=alice/"], expires_in=60, note="n")
    assert sleeps == [0.5, 1.0, 1.5]


def test_client_rejects_missing_configuration() -> None:
    with pytest.raises(ValueError, match="JUPYTERHUB_API_URL"):
        HubClient("", "t")
    with pytest.raises(ValueError, match="JUPYTERHUB_API_TOKEN"):
        HubClient("http://hub/hub/api", "")


# --- the operator: real kube-apiserver + real hub ----------------------------------------------


@pytest.fixture(scope="module")
def policy_crd(controlplane: Any) -> None:
    """The real MCPPolicy CRD, installed the way the operator tests install it."""
    from tests.harness.operator import install_crd

    install_crd(controlplane)


@dataclass
class TokenCluster:
    """What the operator-level token tests share: the control plane with the MCPPolicy CRD, a fresh
    namespace, the loopback hub and a work directory for the operator's log."""

    controlplane: Any
    api: Any
    namespace: str
    hub: RunningHub
    workdir: Path

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def operator(self) -> OperatorProcess:
        """The real operator without its admission webhook (the tests create injected-looking pods
        themselves), told where the hub is the way the chart tells it."""
        operator = OperatorProcess(self.controlplane, self.namespace, self.workdir, native_sidecar="true")
        operator.args += ["--no-webhook", "--verbose"]
        operator.env.update(
            JUPYTERHUB_API_URL=self.hub.api_url,
            JUPYTERHUB_API_TOKEN=self.hub.service_token,
            JUPYTERHUB_PUBLIC_URL=self.hub.public_url,
            MCP_TOKEN_CHECK_INTERVAL="1",
            MCP_TOKEN_RETRY_DELAY="1",
        )
        return operator


@pytest.fixture
def cluster(
    controlplane: Any,
    kube_api: Any,
    k8s_namespace: str,
    policy_crd: None,
    token_hub: RunningHub,
    tmp_path: Path,
) -> TokenCluster:
    return TokenCluster(controlplane, kube_api, k8s_namespace, token_hub, tmp_path)


def kubespawner_pod(user: str, policy: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"jupyter-{user}",
            "labels": {
                "component": "singleuser-server",
                "app": "jupyterhub",
                "hub.jupyter.org/username": user,
            },
            # as the webhook leaves it
            "annotations": {"hub.jupyter.org/username": user, ANN_INJECTED: f"{policy}/1"},
        },
        "spec": {
            "containers": [
                {
                    "name": "notebook",
                    "image": "quay.io/jupyter/base-notebook:latest",
                    "ports": [{"name": "notebook-port", "containerPort": 8888}],
                }
            ]
        },
    }


def read_or_none(read: Callable[[str, str], Any], name: str, namespace: str) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return read(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def secret_values(core: Any, namespace: str, name: str) -> dict[str, str] | None:
    secret = read_or_none(core.read_namespaced_secret, name, namespace)
    if secret is None or secret.metadata.deletion_timestamp:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def hub_condition(custom: Any, namespace: str, policy: str) -> dict[str, Any] | None:
    got = custom.get_namespaced_custom_object(
        "mcp.jupyterhub.org", "v1alpha1", namespace, "mcppolicies", policy
    )
    conds = (got.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == constants.CONDITION_HUB_TOKENS), None)


def warnings_on(core: Any, namespace: str, pod: str, reason: str) -> list[Any]:
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod}").items
    return [e for e in events if e.reason == reason and e.type == "Warning"]


def our_live_tokens(hub: RunningHub, user: str) -> list[str]:
    listed = hub.api("GET", f"/users/{user}/tokens").json()["api_tokens"]
    return [t["id"] for t in listed if tokens.note_pod_uid(t["note"]) is not None]


@pytest.mark.hub
@pytest.mark.controlplane
def test_operator_issues_rotates_revokes_and_rides_out_a_hub_outage(cluster: TokenCluster) -> None:
    from kubernetes import client

    core, ns = cluster.core, cluster.namespace
    custom = client.CustomObjectsApi(cluster.api)
    # due for rotation ~6 s after it is minted (the CRD allows ttlSeconds >= 300)
    spec = {
        "selection": {"users": ["*"]},
        "tokens": {"issue": True, "ttlSeconds": 300, "rotateBeforeSeconds": 294},
    }
    create_policy(cluster.api, ns, "tokens", spec)
    create_policy(cluster.api, ns, "refused", spec)
    operator = cluster.operator()
    operator.start()
    seen_tokens: set[str] = set()
    try:
        # 0. the hub refuses (carol is no hub user): Warning Event + condition, no Secret, pod runs on
        core.create_namespaced_pod(ns, kubespawner_pod("carol", "refused"))
        wait_until(
            "a HubRefused Event on carol's pod", lambda: warnings_on(core, ns, "jupyter-carol", "HubRefused")
        )
        condition = wait_until("the refused policy's condition", lambda: hub_condition(custom, ns, "refused"))
        assert condition["status"] == "False" and condition["reason"] == "HubRefused"
        assert "No such user: carol" in condition["message"]
        assert secret_values(core, ns, "mcp-token-carol") is None
        assert core.read_namespaced_pod("jupyter-carol", ns).status.phase == "Running"

        # 1. issue: Running pod -> Secret with a working, narrow token and a usable client config
        core.create_namespaced_pod(ns, kubespawner_pod("alice", "tokens"))
        first = wait_until("the token Secret for alice", lambda: secret_values(core, ns, "mcp-token-alice"))
        seen_tokens.add(first["token"])
        me = cluster.hub.whoami(first["token"])
        assert me.status_code == 200 and me.json()["name"] == "alice"
        assert set(tokens.MCP_TIERS) == {
            t for t in tokens.MCP_TIERS if f"custom:mcp:{t}!server=alice/" in me.json()["scopes"]
        }
        assert not any(s.startswith("access:") for s in me.json()["scopes"]), me.json()["scopes"]
        assert first["url"] == f"{cluster.hub.public_url}/user/alice/mcp"
        remote = json.loads(first["mcp.json"])["mcpServers"]["jupyterhub"]
        assert remote["env"]["AUTH_HEADER"] == f"Bearer {first['token']}"
        assert first["url"] in remote["args"]
        secret = core.read_namespaced_secret("mcp-token-alice", ns)
        pod = core.read_namespaced_pod("jupyter-alice", ns)
        assert [(r.kind, r.uid) for r in secret.metadata.owner_references] == [("Pod", pod.metadata.uid)]
        assert secret.metadata.annotations[constants.ANN_TOKEN_ID] == first["token_id"]
        assert not pod.metadata.finalizers  # user pods never get a finalizer from us
        assert not [
            k for k in pod.metadata.annotations if k.startswith("kopf.zalando.org/")
        ]  # nor kopf state
        # the value lives in the Secret's data only (kopf keeps no copy in an annotation)
        assert not [v for v in (secret.metadata.annotations or {}).values() if first["token"] in v]

        # 2. rotation: a new token replaces the old, the old one is revoked
        rotated = wait_until(
            "the timer to rotate alice's token",
            lambda: (
                (v := secret_values(core, ns, "mcp-token-alice")) and v["token_id"] != first["token_id"] and v
            ),
        )
        seen_tokens.add(rotated["token"])
        assert cluster.hub.whoami(rotated["token"]).status_code == 200
        wait_until(
            "the old token to be revoked", lambda: cluster.hub.whoami(first["token"]).status_code == 403
        )

        # 3. hub outage: bob's server starts while the hub is down -> Event + policy condition
        cluster.hub.stop()
        try:
            core.create_namespaced_pod(ns, kubespawner_pod("bob", "tokens"))

            down = wait_until(
                "the HubTokens condition to report the outage",
                lambda: (c := hub_condition(custom, ns, "tokens")) and c["status"] == "False" and c,
            )
            assert down["reason"] == "HubUnavailable"
            wait_until(
                "a HubUnavailable Event on bob's pod",
                lambda: warnings_on(core, ns, "jupyter-bob", "HubUnavailable"),
            )
            assert secret_values(core, ns, "mcp-token-bob") is None
            # alice's server is untouched by the outage
            assert core.read_namespaced_pod("jupyter-alice", ns).status.phase == "Running"
        finally:
            cluster.hub.start()

        # ... and recovery converges: bob gets a working token, the condition clears
        bob = wait_until(
            "bob's token after the hub came back", lambda: secret_values(core, ns, "mcp-token-bob")
        )
        seen_tokens.add(bob["token"])
        assert cluster.hub.whoami(bob["token"]).status_code == 200
        wait_until(
            "the HubTokens condition to clear",
            lambda: (c := hub_condition(custom, ns, "tokens")) and c["status"] == "True",
        )

        # 4. restart: the operator died between minting and writing the Secret -> a stray token of
        # ours for alice's pod. Back up, it revokes the stray and keeps the one the Secret holds.
        operator.stop()
        alice_uid = core.read_namespaced_pod("jupyter-alice", ns).metadata.uid
        stray, _ = cluster.hub.mint_token(
            "alice", [mcp_scope("alice", "")], 300, tokens.token_note("tokens", alice_uid)
        )
        seen_tokens.add(stray)
        assert cluster.hub.whoami(stray).status_code == 200
        operator.start()
        wait_until(
            "the stray token to be revoked after the restart",
            lambda: cluster.hub.whoami(stray).status_code == 403,
        )
        # (a rotation may land between reading and using it: wait for a read-then-use that works)
        wait_until(
            "alice's Secret to hold a working token",
            lambda: (
                (v := secret_values(core, ns, "mcp-token-alice"))
                and cluster.hub.whoami(v["token"]).is_success
            ),
        )

        # 5. pod deletion revokes (whatever token alice holds at that moment)
        current = secret_values(core, ns, "mcp-token-alice")
        assert current is not None
        seen_tokens.add(current["token"])
        core.delete_namespaced_pod("jupyter-alice", ns, grace_period_seconds=0)
        wait_until(
            "alice's token to be revoked after her pod was deleted",
            lambda: cluster.hub.whoami(current["token"]).status_code == 403,
        )
        # and nothing of ours is left live for her
        wait_until("no live tokens of ours for alice", lambda: not our_live_tokens(cluster.hub, "alice"))

        # 6. a pod deleted while the operator is down: our finalizer holds its Secret in
        # Terminating until the operator is back, which then revokes the token the Secret holds
        wait_until(
            "alice's old pod to be gone",
            lambda: read_or_none(core.read_namespaced_pod, "jupyter-alice", ns) is None,
        )
        core.create_namespaced_pod(ns, kubespawner_pod("alice", "tokens"))
        wait_until(
            "the finalizer on alice's new Secret",
            lambda: (
                (got := read_or_none(core.read_namespaced_secret, "mcp-token-alice", ns))
                and constants.FINALIZER in (got.metadata.finalizers or ())
            ),
        )
        operator.stop()
        held = secret_values(core, ns, "mcp-token-alice")
        assert held is not None
        seen_tokens.add(held["token"])
        assert cluster.hub.whoami(held["token"]).status_code == 200
        core.delete_namespaced_pod("jupyter-alice", ns, grace_period_seconds=0)
        wait_until(
            "the garbage collector to mark alice's Secret for deletion",
            lambda: (
                read_or_none(core.read_namespaced_secret, "mcp-token-alice", ns).metadata.deletion_timestamp
            ),
        )
        assert cluster.hub.whoami(held["token"]).status_code == 200  # nobody has revoked it yet
        operator.start()
        wait_until(
            "the returning operator to revoke it",
            lambda: cluster.hub.whoami(held["token"]).status_code == 403,
        )
        wait_until(
            "the Secret to be released",
            lambda: read_or_none(core.read_namespaced_secret, "mcp-token-alice", ns) is None,
        )

        # 7. the policy stops issuing tokens: bob's token is revoked and his Secret deleted
        current = secret_values(core, ns, "mcp-token-bob")
        assert current is not None
        seen_tokens.add(current["token"])
        custom.patch_namespaced_custom_object(
            "mcp.jupyterhub.org",
            "v1alpha1",
            ns,
            "mcppolicies",
            "tokens",
            {"spec": {"tokens": {"issue": False}}},
        )
        wait_until("bob's Secret to be deleted", lambda: secret_values(core, ns, "mcp-token-bob") is None)
        wait_until("no live tokens of ours for bob", lambda: not our_live_tokens(cluster.hub, "bob"))
        assert cluster.hub.whoami(current["token"]).status_code == 403
        assert core.read_namespaced_pod("jupyter-bob", ns).status.phase == "Running"

        # 8. ... and issues again: bob's running server gets a token without any pod event (after
        # a restart too, where the operator first saw bob's pod while his policy issued nothing)
        operator.stop()
        before = len(operator.text())
        operator.start()
        wait_until(
            "the restarted operator to find that bob's policy issues nothing",
            lambda: "jupyter-bob: policy tokens issues no hub tokens" in operator.text()[before:],
        )
        custom.patch_namespaced_custom_object(
            "mcp.jupyterhub.org",
            "v1alpha1",
            ns,
            "mcppolicies",
            "tokens",
            {"spec": {"tokens": {"issue": True}}},
        )
        again = wait_until(
            "bob's token once the policy issues again", lambda: secret_values(core, ns, "mcp-token-bob")
        )
        seen_tokens.add(again["token"])
        assert cluster.hub.whoami(again["token"]).status_code == 200
    except BaseException:
        print(f"--- operator log (tail) ---\n{operator.text()[-6000:]}")  # shown by pytest on failure
        raise
    finally:
        operator.stop()
        log = operator.text()
        # every token value any user got, in every line the operator (debug level) and the hub wrote
        leaked = [t for t in seen_tokens if t in log or t in cluster.hub.log_text()]
        assert not leaked, "a token value appeared in a log"


@pytest.mark.hub
@pytest.mark.controlplane
def test_token_of_a_pod_deleted_during_a_hub_outage_is_revoked_when_the_hub_is_back(
    cluster: TokenCluster,
) -> None:
    """The hub is down when the pod goes: the revocation is retried (the Secret held by our
    finalizer, across an operator restart too) until the hub is back and has revoked the token."""
    core, ns = cluster.core, cluster.namespace
    create_policy(cluster.api, ns, "tokens", {"tokens": {"issue": True}})
    operator = cluster.operator()
    operator.start()
    held: dict[str, str] = {}
    pending = f"Secret {ns}/mcp-token-bob: hub token"

    def secret() -> Any:
        return read_or_none(core.read_namespaced_secret, "mcp-token-bob", ns)

    try:
        core.create_namespaced_pod(ns, kubespawner_pod("bob", "tokens"))
        held = wait_until("bob's token Secret", lambda: secret_values(core, ns, "mcp-token-bob"))
        assert cluster.hub.whoami(held["token"]).status_code == 200
        assert constants.FINALIZER in secret().metadata.finalizers

        cluster.hub.stop()
        try:
            core.delete_namespaced_pod("jupyter-bob", ns, grace_period_seconds=0)
            wait_until(
                "a failed revocation of the Secret's token",
                lambda: any(
                    pending in line and "not revoked yet" in line for line in operator.text().splitlines()
                ),
            )
            going = secret()
            assert going.metadata.deletion_timestamp and constants.FINALIZER in going.metadata.finalizers

            # the operator restarts during the outage: the finalizer still holds the Secret, and
            # the new process takes the revocation up again
            operator.stop()
            before = len(operator.text())
            operator.start()
            wait_until(
                "the restarted operator to try again",
                lambda: any(
                    pending in line and "not revoked yet" in line
                    for line in operator.text()[before:].splitlines()
                ),
            )
            assert constants.FINALIZER in secret().metadata.finalizers
        finally:
            cluster.hub.start()

        wait_until(
            "bob's token to be revoked once the hub is back",
            lambda: cluster.hub.whoami(held["token"]).status_code == 403,
        )
        wait_until("bob's Secret to be released", lambda: secret() is None)
        assert not our_live_tokens(cluster.hub, "bob")
    except BaseException:
        print(f"--- operator log (tail) ---\n{operator.text()[-6000:]}")
        raise
    finally:
        operator.stop()
        if held:
            assert held["token"] not in operator.text(), "a token value appeared in the log"


@pytest.mark.hub
@pytest.mark.controlplane
def test_full_operator_issues_and_the_webhook_mounts_the_secret(cluster: TokenCluster) -> None:
    """The shipped process (`jupyterhub-mcp-operator`: webhook + all handlers) with the hub service
    configured as the chart configures it: the user's pod is injected with the token Secret mounted
    read-only into the notebook container, and the operator fills that Secret with a working token."""
    from tests.harness.operator import user_pod

    core, ns = cluster.core, cluster.namespace
    spec = {"selection": {"users": ["alice"]}, "tokens": {"issue": True}}
    create_policy(cluster.api, ns, "issue", spec)
    operator = OperatorProcess(cluster.controlplane, ns, cluster.workdir)
    operator.env.update(
        JUPYTERHUB_API_URL=cluster.hub.api_url,
        JUPYTERHUB_API_TOKEN=cluster.hub.service_token,
        JUPYTERHUB_PUBLIC_URL=cluster.hub.public_url,
    )
    operator.start()
    try:
        operator.register_webhook(cluster.api, "alice")
        pod = core.create_namespaced_pod(ns, user_pod("alice"))
        notebook = next(c for c in pod.spec.containers if c.name == "notebook")
        mount = next(m for m in notebook.volume_mounts if m.mount_path == "/home/jovyan/.mcp")
        assert mount.read_only
        volume = next(v for v in pod.spec.volumes if v.name == mount.name)
        assert volume.secret.secret_name == "mcp-token-alice" and volume.secret.optional

        values = wait_until(
            "the operator to fill alice's Secret", lambda: secret_values(core, ns, "mcp-token-alice")
        )
        me = cluster.hub.whoami(values["token"])
        assert me.status_code == 200 and "custom:mcp:execute!server=alice/" in me.json()["scopes"]
        assert values["url"] == f"{cluster.hub.public_url}/user/alice/mcp"
        assert values["token"] not in operator.text()
    finally:
        try:
            operator.unregister_webhook(cluster.api)
        finally:
            operator.stop()


@pytest.mark.hub
@pytest.mark.controlplane
def test_without_a_hub_service_token_going_token_secrets_are_released(cluster: TokenCluster) -> None:
    """A token Secret left by an earlier run with a hub service token: an operator without one
    cannot revoke its token, and says so (Warning Event) rather than hold the Secret forever."""
    core, ns = cluster.core, cluster.namespace
    value = "not-a-real-token-" + uuid.uuid4().hex
    core.create_namespaced_secret(
        ns,
        {
            "metadata": {
                "name": "mcp-token-carol",
                "labels": {"app.kubernetes.io/managed-by": "jupyterhub-mcp"},
                "annotations": {constants.ANN_TOKEN_ID: "a42", constants.ANN_USER: "carol"},
                "finalizers": [constants.FINALIZER],
            },
            "stringData": {"token": value},
        },
    )
    operator = cluster.operator()
    del operator.env["JUPYTERHUB_API_TOKEN"]
    operator.start()
    try:
        wait_until(
            "the operator to start without a hub token",
            lambda: "JUPYTERHUB_API_TOKEN is not set" in operator.text(),
        )
        core.delete_namespaced_secret("mcp-token-carol", ns)
        wait_until(
            "carol's Secret to be released",
            lambda: read_or_none(core.read_namespaced_secret, "mcp-token-carol", ns) is None,
        )
        wait_until(
            "a HubTokenNotRevoked Warning",
            lambda: warnings_on(core, ns, "mcp-token-carol", "HubTokenNotRevoked"),
        )
    except BaseException:
        print(f"--- operator log (tail) ---\n{operator.text()[-6000:]}")
        raise
    finally:
        operator.stop()
        assert value not in operator.text(), "a token value appeared in the log"


@pytest.mark.hub
@pytest.mark.controlplane
def test_a_token_secret_deleted_by_hand_is_reminted_by_the_periodic_pass(cluster: TokenCluster) -> None:
    """No event reaches the issuer when its Secret is deleted (the finalizer revokes the token);
    the level-triggered pass sees a Running pod without one and issues again."""
    core, ns = cluster.core, cluster.namespace
    create_policy(cluster.api, ns, "tokens", {"selection": {"users": ["bob"]}, "tokens": {"issue": True}})
    operator = cluster.operator()
    operator.env["MCP_RECONCILE_INTERVAL"] = "2"
    operator.start()
    try:
        core.create_namespaced_pod(ns, kubespawner_pod("bob", "tokens"))
        first = wait_until("bob's token Secret", lambda: secret_values(core, ns, "mcp-token-bob"))
        core.delete_namespaced_secret("mcp-token-bob", ns)

        def reminted() -> dict[str, str] | None:
            values = secret_values(core, ns, "mcp-token-bob")
            # the token, not its id: the hub's database may give a new token a revoked one's id
            return values if values and values["token"] != first["token"] else None

        second = wait_until("a new token in a new Secret", reminted)
        assert cluster.hub.whoami(second["token"]).status_code == 200
        # the hand-deleted Secret's token was revoked by its finalizer, not left live
        wait_until("the old token revoked", lambda: cluster.hub.whoami(first["token"]).status_code == 403)
    finally:
        operator.stop()
        print(operator.text()[-3000:])


def stand_in_deployment(name: str) -> dict[str, Any]:
    """A Deployment the uninstall hook scales to 0: the operator's own in the chart. Here the
    operator runs on the host, so kwok's pods of this one stand in for its pod."""
    labels = {"app.kubernetes.io/name": name}
    container = {"name": "operator", "image": "jupyterhub-mcp/operator:test"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


@pytest.mark.hub
@pytest.mark.controlplane
def test_the_uninstall_hook_stops_the_operator_then_revokes_and_releases_every_token(
    cluster: TokenCluster,
) -> None:
    """`helm uninstall`'s pre-delete Job (`--uninstall`): the operator's Deployment goes to 0
    first (so no pass re-mints what is released), then every token it minted is revoked at the
    real hub and its Secret is gone, not left Terminating behind the finalizer."""
    from kubernetes import client

    core, ns = cluster.core, cluster.namespace
    apps = client.AppsV1Api(cluster.api)
    create_policy(cluster.api, ns, "tokens", {"selection": {"users": ["*"]}, "tokens": {"issue": True}})
    apps.create_namespaced_deployment(ns, stand_in_deployment("mcp-operator"))
    wait_until(
        "the stand-in Deployment running",
        lambda: apps.read_namespaced_deployment("mcp-operator", ns).status.ready_replicas == 1,
    )
    operator = cluster.operator()
    operator.start()
    try:
        for user in ("alice", "bob"):
            core.create_namespaced_pod(ns, kubespawner_pod(user, "tokens"))
        held = {
            user: wait_until(f"{user}'s token Secret", partial(secret_values, core, ns, f"mcp-token-{user}"))
            for user in ("alice", "bob")
        }
        assert all(cluster.hub.whoami(v["token"]).status_code == 200 for v in held.values())
    finally:
        operator.stop()  # what scaling the chart's Deployment to 0 does to the real operator
    done = operator.uninstall("mcp-operator")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "revoked 2 hub tokens, deleted 2 token Secrets" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "NOT revoked" not in done.stdout
    assert apps.read_namespaced_deployment("mcp-operator", ns).spec.replicas == 0
    for user, values in held.items():
        assert cluster.hub.whoami(values["token"]).status_code == 403, f"{user}'s token still works"
        assert read_or_none(core.read_namespaced_secret, f"mcp-token-{user}", ns) is None
    assert not our_live_tokens(cluster.hub, "alice") and not our_live_tokens(cluster.hub, "bob")
    for value in held.values():
        assert value["token"] not in done.stdout + done.stderr  # never log a token
