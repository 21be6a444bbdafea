"""Golden-file tests of the injection (Istio style): tests/golden/injection/<case>/
{input.yaml, policies.yaml, [options.yaml], expected.yaml}. The patch is applied with the
`jsonpatch` library (an independent RFC 6902 implementation) and the result compared with
expected.yaml. `UPDATE_GOLDEN=1 pytest tests/unit/test_injection.py` rewrites the expected files;
review the diff before committing them."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from mcp_operator.injection import (
    ANN_INJECTED,
    CONTAINER_NAME,
    InjectionOptions,
    build_sidecar_patch,
    native_sidecar_supported,
    plan_injection,
    sidecar_environment,
)
from mcp_operator.policy import Policy
from mcp_sidecar.config import Settings

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "injection"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").exists())
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def load_case(case: str) -> tuple[dict[str, Any], list[Policy], InjectionOptions]:
    folder = GOLDEN / case
    pod = yaml.safe_load((folder / "input.yaml").read_text())
    policies = [Policy.from_object(p) for p in yaml.safe_load_all((folder / "policies.yaml").read_text())]
    options_file = folder / "options.yaml"
    options = InjectionOptions(**yaml.safe_load(options_file.read_text())) if options_file.exists() else None
    return pod, policies, options or InjectionOptions()


def injected(pod: dict[str, Any], policies: list[Policy], options: InjectionOptions) -> dict[str, Any]:
    decision = plan_injection(pod, policies, options)
    return jsonpatch.apply_patch(pod, decision.patch) if decision.patch else copy.deepcopy(pod)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    pod, policies, options = load_case(case)
    result = injected(pod, policies, options)
    expected_file = GOLDEN / case / "expected.yaml"
    if UPDATE:
        expected_file.write_text(yaml.safe_dump(result, sort_keys=False, width=120))
    assert result == yaml.safe_load(expected_file.read_text())


def test_golden_cases_cover_the_issue() -> None:
    wanted = {
        "default-server",
        "named-server",
        "secret-token",
        "already-injected",
        "excluded-user",
        "no-native-sidecar",
        "email-user",
    }
    assert wanted <= set(CASES)


def _sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod["spec"]
    found = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == CONTAINER_NAME]
    assert len(found) == 1
    return found[0]


def test_untouched_cases_have_no_patch() -> None:
    for case, reason in (("already-injected", "already-injected"), ("excluded-user", "no-policy")):
        pod, policies, options = load_case(case)
        decision = plan_injection(pod, policies, options)
        assert (decision.patch, decision.reason) == ([], reason)


def test_injecting_the_result_again_changes_nothing() -> None:
    pod, policies, options = load_case("default-server")
    once = injected(pod, policies, options)
    assert plan_injection(once, policies, options).reason == "already-injected"
    # the container alone (annotation removed by someone) also counts
    del once["metadata"]["annotations"][ANN_INJECTED]
    assert plan_injection(once, policies, options).patch == []


def test_native_sidecar_placement_and_port_name() -> None:
    pod, policies, _ = load_case("default-server")
    native = injected(pod, policies, InjectionOptions(native_sidecar=True))
    assert [c["name"] for c in native["spec"]["initContainers"]] == ["block-cloud-metadata", CONTAINER_NAME]
    assert native["spec"]["initContainers"][-1]["restartPolicy"] == "Always"
    regular = injected(pod, policies, InjectionOptions(native_sidecar=False))
    assert [c["name"] for c in regular["spec"]["containers"]] == ["notebook", CONTAINER_NAME]
    assert "restartPolicy" not in regular["spec"]["containers"][-1]
    for result in (native, regular):
        ports = [p["name"] for c in result["spec"]["containers"] for p in c.get("ports", [])]
        assert ports.count("notebook-port") == 1  # KubeSpawner still finds exactly one


def test_a_policy_without_an_image_gets_the_operators_image() -> None:
    """The chart's sidecar.image reaches the operator as --sidecar-image / MCP_SIDECAR_IMAGE and
    must apply to every policy that does not name an image; a policy's own image still wins."""
    pod, _, _ = load_case("default-server")
    options = InjectionOptions(sidecar_image="registry.example.org/mcp/sidecar:9.9.9")

    def image_for(sidecar: dict[str, Any]) -> str:
        spec = {"selection": {"users": ["*"]}, "sidecar": sidecar}
        policy = Policy.from_object({"metadata": {"name": "p"}, "spec": spec})
        return _sidecar(injected(pod, [policy], options))["image"]

    assert image_for({}) == "registry.example.org/mcp/sidecar:9.9.9"
    assert image_for({"image": "own.example.org/sidecar:1.0"}) == "own.example.org/sidecar:1.0"


def test_secret_reference_is_kept_not_copied() -> None:
    pod, policies, options = load_case("secret-token")
    env = {e["name"]: e for e in _sidecar(injected(pod, policies, options))["env"]}
    assert env["JUPYTERHUB_API_TOKEN"] == {
        "name": "JUPYTERHUB_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "jupyter-carol-token", "key": "token"}},
    }
    # only what the sidecar reads, never the notebook's OAuth client settings
    assert "JUPYTERHUB_CLIENT_ID" not in env and "JUPYTERHUB_SERVICE_URL" not in env


def test_the_sidecar_accepts_the_injected_environment() -> None:
    """The environment the webhook writes is one the sidecar's own parser takes and understands."""
    pod, policies, options = load_case("named-server")
    env = {e["name"]: e["value"] for e in _sidecar(injected(pod, policies, options))["env"]}
    settings = Settings.from_env(env)
    assert settings.mcp_path == "/user/bob/lab/mcp"
    assert settings.jupyter_base_url == "http://127.0.0.1:8888/user/bob/lab/"
    assert (settings.port, settings.mode, settings.deny_tools) == (9000, "edit", frozenset({"delete_cell"}))
    assert settings.audit_include_code and settings.activity_interval == 120


def test_token_secret_mounted_optional_read_only() -> None:
    pod, policies, options = load_case("named-server")
    result = injected(pod, policies, options)
    volume = next(v for v in result["spec"]["volumes"] if v["name"] == "mcp-token")
    assert volume["secret"] == {"secretName": "mcp-token-bob--lab", "optional": True}
    mounts = result["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "mcp-token", "mountPath": "/home/jovyan/.mcp", "readOnly": True} in mounts


def test_security_context_and_probes() -> None:
    pod, policies, options = load_case("default-server")
    sidecar = _sidecar(injected(pod, policies, options))
    sc = sidecar["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["readOnlyRootFilesystem"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # the startup gate must not wait for Jupyter (it starts after a native sidecar is started)
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_pod_without_hub_env_is_left_alone() -> None:
    """The sidecar refuses to start without the hub's URL and token; an unready sidecar would block
    the spawn, so the pod passes untouched."""
    pod, policies, options = load_case("default-server")
    env = pod["spec"]["containers"][0]["env"]
    pod["spec"]["containers"][0]["env"] = [e for e in env if e["name"] != "JUPYTERHUB_API_URL"]
    assert plan_injection(pod, policies, options).reason == "no-hub-env"


def test_pod_without_annotations_map_gets_one() -> None:
    pod, policies, options = load_case("default-server")
    pod["metadata"]["annotations"] = None
    assert plan_injection(pod, policies, options).reason == "not-a-user-pod"
    policy = policies[0]
    pod2, _, _ = load_case("default-server")
    pod2["metadata"]["labels"] = {}
    result = jsonpatch.apply_patch(pod2, build_sidecar_patch(pod2, policy, options))
    assert result["metadata"]["labels"] == {"mcp.jupyterhub.org/pod": "jupyter-alice"}


def test_local_mode_environment_without_a_pod() -> None:
    policy = Policy.from_object({"metadata": {"name": "p"}, "spec": {"tools": {"allow": ["read_cell"]}}})
    env = sidecar_environment(
        policy,
        jupyter_url="http://127.0.0.1:9999",
        user="alice",
        server_name="",
        service_prefix="/user/alice/",
        hub_api_url="http://127.0.0.1:8081/hub/api",
        activity_url="http://127.0.0.1:8081/hub/api/users/alice/activity",
        api_token="secret-token",
    )
    settings = Settings.from_env({e["name"]: e["value"] for e in env})
    assert settings.user == "alice" and settings.hub_api_token == "secret-token"
    assert settings.jupyter_url == "http://127.0.0.1:9999" and settings.allow_tools == {"read_cell"}


@pytest.mark.parametrize(
    ("major", "minor", "native"),
    [("1", "28", False), ("1", "29", True), ("1", "35+", True), ("2", "0", True), ("1", "x", False)],
)
def test_native_sidecar_from_server_version(major: str, minor: str, native: bool) -> None:
    assert native_sidecar_supported(major, minor) is native


def test_pod_without_volumes_gets_the_list() -> None:
    pod, policies, options = load_case("named-server")  # tokens.issue: two volumes
    del pod["spec"]["volumes"]
    del pod["spec"]["containers"][0]["volumeMounts"]
    result = injected(pod, policies, options)
    assert [v["name"] for v in result["spec"]["volumes"]] == ["mcp-sidecar-tmp", "mcp-token"]
    assert [m["name"] for m in result["spec"]["containers"][0]["volumeMounts"]] == ["mcp-token"]
    assert _sidecar(result)["volumeMounts"] == [{"name": "mcp-sidecar-tmp", "mountPath": "/tmp"}]
