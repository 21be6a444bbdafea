"""The Z2JH harness's pure parts (tests/harness/z2jh.py): what the kubelet would hand a container
(env, service links, hosts file), the mount wrapper, values merging, the proxy's port rewrite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness.z2jh import (
    Mount,
    deep_merge,
    effective_requirements,
    expand,
    harness_values,
    hosts_file,
    hub_port_override,
    resolve_env,
    rewrite_port,
    service_links,
    venv_key,
    wrapper_script,
)


def test_service_links_follow_the_kubelet_names() -> None:
    env = service_links("proxy-public", "10.0.0.1", [("http", 8080, "TCP")])
    assert env == {
        "PROXY_PUBLIC_SERVICE_HOST": "10.0.0.1",
        "PROXY_PUBLIC_SERVICE_PORT": "8080",
        "PROXY_PUBLIC_SERVICE_PORT_HTTP": "8080",
        "PROXY_PUBLIC_PORT": "tcp://10.0.0.1:8080",
        "PROXY_PUBLIC_PORT_8080_TCP": "tcp://10.0.0.1:8080",
        "PROXY_PUBLIC_PORT_8080_TCP_PROTO": "tcp",
        "PROXY_PUBLIC_PORT_8080_TCP_PORT": "8080",
        "PROXY_PUBLIC_PORT_8080_TCP_ADDR": "10.0.0.1",
    }
    assert "PROXY_API_SERVICE_PORT_" not in "".join(service_links("proxy-api", "h", [(None, 1, "TCP")]))


def test_expand_is_kubernetes_dollar_paren() -> None:
    env = {"HUB_SERVICE_PORT": "4321"}
    assert expand("http://hub:$(HUB_SERVICE_PORT)/hub/error", env) == "http://hub:4321/hub/error"
    assert expand("$(UNDEFINED) $$(HUB_SERVICE_PORT) $HOME", env) == "$(UNDEFINED) $(HUB_SERVICE_PORT) $HOME"


def test_resolve_env_reads_fields_secrets_configmaps_in_order() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {
                "name": "CONFIGPROXY_AUTH_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": "hub", "key": "hub.config.ConfigurableHTTPProxy.auth_token"}
                },
            },
            {"name": "TARGET", "value": "http://hub:$(HUB_SERVICE_PORT)"},
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}},
        ],
    }
    env = resolve_env(
        container,
        base={"HUB_SERVICE_PORT": "9"},
        fields={"metadata.namespace": "ns"},
        secrets={"hub": {"hub.config.ConfigurableHTTPProxy.auth_token": "tok"}},
        configmaps={"cm": {"a": "1"}},
    )
    assert env == {
        "HUB_SERVICE_PORT": "9",
        "CM_a": "1",
        "POD_NAMESPACE": "ns",
        "CONFIGPROXY_AUTH_TOKEN": "tok",
        "TARGET": "http://hub:9",
        "FROM_CM": "1",
    }


def test_hosts_file_names_every_service_form() -> None:
    text = hosts_file("ns", ["hub", "proxy-api"], "10.1.0.1", "10.1.0.1", "hub-pod")
    assert "10.1.0.1\thub hub.ns.svc hub.ns.svc.cluster.local" in text.splitlines()
    assert "10.1.0.1\thub-pod" in text.splitlines()
    assert "127.0.0.1\tlocalhost" in text.splitlines()


def test_values_merge_like_helm_and_the_harness_turns_off_only_kubelet_parts() -> None:
    merged = deep_merge(harness_values(), {"hub": {"baseUrl": "/jhub/", "services": {"x": {}}}})
    assert merged["hub"]["baseUrl"] == "/jhub/"
    assert set(merged["hub"]["services"]) == {"harness-admin", "x"}
    assert merged["hub"]["image"]["tag"] == "48ea50e"
    assert merged["prePuller"]["hook"]["enabled"] is False
    assert merged["prePuller"]["continuous"]["enabled"] is False
    assert merged["scheduling"]["userScheduler"]["enabled"] is False
    assert merged["scheduling"]["userPods"]["nodeAffinity"]["matchNodePurpose"] == "require"
    assert deep_merge({"a": [1]}, {"a": [2]}) == {"a": [2]}


def test_proxy_ports_are_rewritten_and_nothing_else() -> None:
    ports = {8000: 5000, 8001: 5001}
    assert rewrite_port("--port=8000", ports) == "--port=5000"
    assert rewrite_port("--api-port=8001", ports) == "--api-port=5001"
    assert rewrite_port("--ip=", ports) == "--ip="
    assert rewrite_port("--default-target=http://hub:8000", ports) == "--default-target=http://hub:8000"


def test_hub_port_override_moves_the_bind_and_the_culler() -> None:
    class Section(dict):
        __getattr__ = dict.__getitem__

        def __setattr__(self, key: str, value: object) -> None:
            self[key] = value

    c = Section(
        JupyterHub=Section(
            services=[{"name": "cull", "command": ["x", "--url=http://localhost:8081/hub/api"]}]
        )
    )
    exec(hub_port_override(8081, 4242), {"c": c})
    assert c.JupyterHub.hub_bind_url == "http://:4242"
    assert c.JupyterHub.services[0]["command"][1] == "--url=http://localhost:4242/hub/api"


def test_venv_key_changes_with_the_pins_and_the_python() -> None:
    assert venv_key("a==1", "3.11") != venv_key("a==2", "3.11") != venv_key("a==2", "3.12")


def test_wrapper_overlays_missing_mount_points_and_binds(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "file").write_text("x")
    missing = str(tmp_path / "exists" / "not" / "here")
    (tmp_path / "exists").mkdir()
    script = wrapper_script(
        [Mount(source, missing, read_only=True), Mount(source / "file", str(tmp_path / "exists" / "f"))],
        tmp_path / "overlay",
        "/",
    )
    lines = script.splitlines()
    overlays = [line for line in lines if line.startswith("mount -t overlay")]
    assert len(overlays) == 1  # one overlay of the nearest existing ancestor serves both
    assert f"lowerdir={tmp_path / 'exists'}," in overlays[0]
    assert f"mount --bind {source} {missing}" in lines
    assert f"mount -o remount,bind,ro {missing}" in lines
    assert lines[-1] == 'exec "$@"'
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    with pytest.raises(ValueError, match="refusing to overlay /"):
        wrapper_script([Mount(source, "/no-such-top-level-dir-z2jh/x")], tmp_path / "o2", "/")


def test_requirements_stay_pinned_and_psycopg2_is_prebuilt_only_without_pg_config() -> None:
    pinned = "psycopg2==2.9.12\n    # via -r unfrozen/requirements.txt\npycurl==7.47.0\n"
    assert effective_requirements(pinned, can_build_psycopg2=True) == pinned
    swapped = effective_requirements(pinned, can_build_psycopg2=False).splitlines()
    assert swapped[0].startswith("psycopg2-binary==2.9.12  #")
    assert swapped[1:] == pinned.splitlines()[1:]
