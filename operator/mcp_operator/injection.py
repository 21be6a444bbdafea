"""The sidecar injection: pod + policy in, JSONPatch out (pure, no I/O).

Used by the admission webhook (`plan_injection`) and by local mode (`sidecar_environment`), so a
sidecar gets the same environment whether Kubernetes or a laptop starts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_operator.constants import ANN_INJECTED, LABEL_POD
from mcp_operator.names import label_value, token_secret_name
from mcp_operator.policy import NOTEBOOK_PORT, PodIdentity, Policy, select_policy

CONTAINER_NAME = "mcp-sidecar"
PORT_NAME = "mcp"  # never "notebook-port": KubeSpawner finds the Jupyter port by that name
NOTEBOOK_CONTAINER = "notebook"
NOTEBOOK_PORT_NAME = "notebook-port"
TOKEN_VOLUME = "mcp-token"
DEFAULT_SIDECAR_IMAGE = "ghcr.io/jupyterhub-mcp/sidecar:0.1.0"
TMP_VOLUME = "mcp-sidecar-tmp"  # the root filesystem is read-only; Python and its libraries want a /tmp

# The notebook container's variables the sidecar reads (docs/architecture.md). Only these: the
# rest (OAuth client secret, JUPYTERHUB_SERVICE_URL of the notebook itself) is not the sidecar's.
HUB_ENV_NAMES = (
    "JUPYTERHUB_SERVICE_PREFIX",
    "JUPYTERHUB_USER",
    "JUPYTERHUB_SERVER_NAME",
    "JUPYTERHUB_API_URL",
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_ACTIVITY_URL",
    "JUPYTERHUB_ALLOW_TOKEN_IN_URL",
)

EnvVar = Mapping[str, Any]  # a Kubernetes EnvVar: {"name", "value"} or {"name", "valueFrom"}


@dataclass(frozen=True)
class InjectionOptions:
    """What the operator knows about the cluster, fixed at start-up."""

    native_sidecar: bool = True
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE  # for policies that do not name one


def native_sidecar_supported(major: str, minor: str) -> bool:
    """Native sidecars (init containers with restartPolicy Always) are on by default from 1.29."""
    try:
        return (int(major), int(minor.rstrip("+"))) >= (1, 29)
    except ValueError:
        return False


def _var(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def policy_environment(policy: Policy) -> list[dict[str, Any]]:
    """The policy's settings as the sidecar's MCP_* variables."""
    env = [
        _var("MCP_PORT", policy.sidecar.port),
        _var("MCP_MODE", policy.tools.mode),
        _var("MCP_EXEC_TIMEOUT", policy.execution.timeout_seconds),
        _var("MCP_EXEC_MAX_TIMEOUT", policy.execution.max_timeout_seconds),
        _var("MCP_OUTPUT_MAX_CHARS", policy.execution.output_max_chars),
        _var("MCP_OUTPUT_MAX_IMAGE_BYTES", policy.execution.output_max_image_bytes),
        _var("MCP_AUDIT_LOG", "stdout" if policy.audit.enabled else "off"),
        _var("MCP_AUDIT_INCLUDE_CODE", "1" if policy.audit.include_code else "0"),
    ]
    if policy.tools.allow:
        env.append(_var("MCP_ALLOW_TOOLS", ",".join(policy.tools.allow)))
    if policy.tools.deny:
        env.append(_var("MCP_DENY_TOOLS", ",".join(policy.tools.deny)))
    if not policy.auth.accept_server_access:
        # Only when refused: the sidecar's default admits access:servers (pods patched before stay equal).
        env.append(_var("MCP_ACCEPT_SERVER_ACCESS", "0"))
    return env


def sidecar_environment(
    policy: Policy,
    *,
    jupyter_url: str,
    hub_env: Iterable[EnvVar] = (),
    user: str | None = None,
    server_name: str | None = None,
    service_prefix: str | None = None,
    hub_api_url: str | None = None,
    activity_url: str | None = None,
    api_token: str | None = None,
) -> list[dict[str, Any]]:
    """The sidecar's environment. In a pod, `hub_env` is the notebook container's JUPYTERHUB_*
    entries, kept as they are (a `valueFrom.secretKeyRef` stays a reference, the token is never
    copied); local mode passes plain values instead. Explicit values win over `hub_env`. Extra env
    from the policy comes last, so an admin can override anything."""
    explicit = {
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVER_NAME": server_name,
        "JUPYTERHUB_SERVICE_PREFIX": service_prefix,
        "JUPYTERHUB_API_URL": hub_api_url,
        "JUPYTERHUB_ACTIVITY_URL": activity_url,
        "JUPYTERHUB_API_TOKEN": api_token,
    }
    env: dict[str, dict[str, Any]] = {}
    for entry in hub_env:
        if entry.get("name") in HUB_ENV_NAMES:
            env[entry["name"]] = dict(entry)
    for name, value in explicit.items():
        if value is not None:
            env[name] = _var(name, value)
    ordered = [env[name] for name in HUB_ENV_NAMES if name in env]
    ordered.append(_var("JUPYTER_SERVER_URL", jupyter_url))
    ordered += policy_environment(policy)
    ordered += [dict(e) for e in policy.sidecar.env]
    return ordered


def sidecar_container(policy: Policy, env: list[dict[str, Any]], options: InjectionOptions) -> dict[str, Any]:
    port = policy.sidecar.port
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": policy.sidecar.image or options.sidecar_image,
        "imagePullPolicy": policy.sidecar.image_pull_policy,
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": dict(policy.sidecar.resources),
        # /healthz answers as soon as the process listens. It gates the startup (a native sidecar's
        # startupProbe holds back the notebook container, so it must not wait for Jupyter) and
        # liveness. /readyz (Jupyter reachable) turns ready together with the notebook itself, so
        # the hub's wait for a Ready pod is not made longer than a probe period.
        "startupProbe": _probe("/healthz", port, period=1, failures=60),
        "readinessProbe": _probe("/readyz", port, period=2, failures=1),
        "livenessProbe": _probe("/healthz", port, period=10, failures=3),
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],  # noqa: S108 (a mount point)
    }
    if options.native_sidecar:
        container["restartPolicy"] = "Always"
    return container


def _probe(path: str, port: int, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 1,
        "failureThreshold": failures,
    }


def _containers(pod: Mapping[str, Any], key: str) -> Sequence[Mapping[str, Any]]:
    return (pod.get("spec") or {}).get(key) or ()


def notebook_index(pod: Mapping[str, Any]) -> int | None:
    """The notebook container: named `notebook` (KubeSpawner), else the one with `notebook-port`."""
    containers = _containers(pod, "containers")
    for i, c in enumerate(containers):
        if c.get("name") == NOTEBOOK_CONTAINER:
            return i
    for i, c in enumerate(containers):
        if any(p.get("name") == NOTEBOOK_PORT_NAME for p in c.get("ports") or ()):
            return i
    return None


def jupyter_url(notebook: Mapping[str, Any]) -> str:
    port = next(
        (p["containerPort"] for p in notebook.get("ports") or () if p.get("name") == NOTEBOOK_PORT_NAME),
        NOTEBOOK_PORT,
    )
    return f"http://127.0.0.1:{port}"


def already_injected(pod: Mapping[str, Any]) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if ANN_INJECTED in annotations:
        return True
    return any(
        c.get("name") == CONTAINER_NAME
        for key in ("containers", "initContainers")
        for c in _containers(pod, key)
    )


def injected_port(pod: Mapping[str, Any]) -> int | None:
    """The port the webhook gave this pod's sidecar (its `mcp` containerPort), None when the pod has
    no sidecar of ours. A running pod keeps that port whatever its policy says later."""
    for key in ("initContainers", "containers"):
        for c in _containers(pod, key):
            if c.get("name") != CONTAINER_NAME:
                continue
            ports = [p for p in c.get("ports") or () if isinstance(p.get("containerPort"), int)]
            named = [p for p in ports if p.get("name") == PORT_NAME]
            return (named or ports or [{}])[0].get("containerPort")
    return None


def _escape(key: str) -> str:
    """JSON Pointer escaping (RFC 6901) for keys such as `mcp.jupyterhub.org/injected`."""
    return key.replace("~", "~0").replace("/", "~1")


def _add_to_list(pod_part: Mapping[str, Any], key: str, path: str, item: Any) -> dict[str, Any]:
    if pod_part.get(key):
        return {"op": "add", "path": f"{path}/{key}/-", "value": item}
    return {"op": "add", "path": f"{path}/{key}", "value": [item]}


def _add_to_map(pod_part: Mapping[str, Any], key: str, path: str, name: str, value: str) -> dict[str, Any]:
    if pod_part.get(key) is not None:
        return {"op": "add", "path": f"{path}/{key}/{_escape(name)}", "value": value}
    return {"op": "add", "path": f"{path}/{key}", "value": {name: value}}


def build_sidecar_patch(
    pod: Mapping[str, Any], policy: Policy, options: InjectionOptions
) -> list[dict[str, Any]]:
    """JSONPatch ops that add the sidecar of `policy` to `pod`; [] when the pod is not injectable
    (use `plan_injection` to learn why)."""
    return plan_injection(pod, [policy], options).patch


@dataclass(frozen=True)
class Decision:
    """What the webhook does with one pod, and why (for the log and the metrics)."""

    patch: list[dict[str, Any]]
    policy: Policy | None
    reason: str  # injected | no-policy | already-injected | not-a-user-pod | no-notebook | no-hub-env


def plan_injection(pod: Mapping[str, Any], policies: Iterable[Policy], options: InjectionOptions) -> Decision:
    identity = PodIdentity.of(pod)
    if identity is None:
        return Decision([], None, "not-a-user-pod")
    if already_injected(pod):
        return Decision([], None, "already-injected")
    policy = select_policy(policies, pod)
    if policy is None:
        return Decision([], None, "no-policy")
    index = notebook_index(pod)
    if index is None:
        return Decision([], policy, "no-notebook")
    notebook = _containers(pod, "containers")[index]
    hub_env = [e for e in notebook.get("env") or () if e.get("name") in HUB_ENV_NAMES]
    # Without the hub's URL and token the sidecar refuses to start, and a sidecar that never gets
    # ready blocks the user's spawn: better no MCP than no server.
    present = {e["name"] for e in hub_env}
    if not {"JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN"} <= present:
        return Decision([], policy, "no-hub-env")

    env = sidecar_environment(policy, jupyter_url=jupyter_url(notebook), hub_env=hub_env)
    container = sidecar_container(policy, env, options)
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    patch = [_add_to_map(meta, "annotations", "/metadata", ANN_INJECTED, policy.marker)]
    if meta.get("name"):  # KubeSpawner always names its pods; generateName pods get no selector label
        patch.append(_add_to_map(meta, "labels", "/metadata", LABEL_POD, label_value(meta["name"])))
    if options.native_sidecar:
        patch.append(_add_to_list(spec, "initContainers", "/spec", container))
    else:
        patch.append(_add_to_list(spec, "containers", "/spec", container))  # after the notebook
    volumes = [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}}]
    if policy.tokens.issue:
        volumes.append(_token_volume(identity))
        mount = {"name": TOKEN_VOLUME, "mountPath": policy.tokens.mount_path, "readOnly": True}
        patch.append(_add_to_list(notebook, "volumeMounts", f"/spec/containers/{index}", mount))
    if spec.get("volumes"):
        patch += [{"op": "add", "path": "/spec/volumes/-", "value": v} for v in volumes]
    else:
        patch.append({"op": "add", "path": "/spec/volumes", "value": volumes})
    return Decision(patch, policy, "injected")


def _token_volume(identity: PodIdentity) -> dict[str, Any]:
    """The user's token Secret, mounted read-only into the notebook. `optional`: the operator mints
    the Secret after the pod runs, and the spawn must never wait for it."""
    return {
        "name": TOKEN_VOLUME,
        "secret": {
            "secretName": token_secret_name(identity.user, identity.server_name),
            "optional": True,
            # Default file mode: the files are root-owned and the user (uid 1000, no fsGroup
            # guaranteed) must read them; nobody else shares the container.
        },
    }
