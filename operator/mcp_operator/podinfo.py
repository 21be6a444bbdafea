"""What a user pod says about itself (pure): the values the hub put into its spec, its IP.

The hub hands each server its prefix and API URL as environment (`JUPYTERHUB_SERVICE_PREFIX`,
`JUPYTERHUB_API_URL`); they carry the hub's base URL (`hub.baseUrl` in Zero to JupyterHub), so
paths and URLs built from them are right whatever the base.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp_operator.endpoint import mcp_path_under, server_prefix
from mcp_operator.injection import CONTAINER_NAME, notebook_index
from mcp_operator.policy import PodIdentity


def notebook_env(pod: Mapping[str, Any], name: str) -> str | None:
    """A literal environment value of the user's container (the hub sets these on the pod spec):
    the notebook container as the webhook finds it, the one the sidecar's copies come from."""
    containers = list((pod.get("spec") or {}).get("containers") or ())
    index = notebook_index(pod)
    if index is None:
        return None
    for entry in containers[index].get("env") or ():
        if entry.get("name") == name and entry.get("value"):
            return str(entry["value"])
    return None


def service_prefix(pod: Mapping[str, Any]) -> str:
    """The server's prefix as the hub handed it to the pod (`JUPYTERHUB_SERVICE_PREFIX`, which has
    the hub's base URL in it: `/jhub/user/alice/`); without it, `/user/<name>/` from the pod's
    annotations."""
    prefix = notebook_env(pod, "JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        return prefix if prefix.endswith("/") else prefix + "/"
    identity = PodIdentity.of(pod)
    if identity is None:
        raise ValueError(f"pod {pod['metadata'].get('name')} has no hub.jupyter.org/username annotation")
    return server_prefix(identity.user, identity.server_name)


def endpoint_path(pod: Mapping[str, Any]) -> str:
    """`<JUPYTERHUB_SERVICE_PREFIX>mcp`: where the sidecar serves (it reads the same variable)."""
    return mcp_path_under(service_prefix(pod))


def pod_ip(pod: Mapping[str, Any]) -> str | None:
    """The pod's IP while it can serve; None before it has one and once it is done."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed") or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    return status.get("podIP") or None


# Waiting reasons of a container that is simply on its way (not a problem to report).
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})


def sidecar_not_started(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when the injected sidecar cannot start: its image cannot be pulled, it
    crashes, or it cannot be created. A native sidecar holds the notebook back until it starts, so
    the user's spawn then fails only at KubeSpawner's start timeout, minutes later, with a message
    that does not name the sidecar: this says why, while it happens. None while all is well."""
    status = pod.get("status") or {}
    statuses = [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]
    sidecar = next((c for c in statuses if c.get("name") == CONTAINER_NAME), None)
    if sidecar is None or sidecar.get("ready"):
        return None
    state = sidecar.get("state") or {}
    waiting, terminated = state.get("waiting"), state.get("terminated")
    image = sidecar.get("image") or "the sidecar image"
    if waiting and waiting.get("reason") and waiting["reason"] not in _STARTING:
        reason, detail = waiting["reason"], waiting.get("message") or ""
    elif terminated and terminated.get("exitCode", 0) != 0:
        reason, detail = terminated.get("reason") or "Error", f"exit code {terminated.get('exitCode')}"
    else:
        return None
    if "Pull" in reason or reason == "InvalidImageName":
        advice = (
            f"check that {image} can be pulled from this node (registry, tag, imagePullSecrets) and "
            "add it to Zero to JupyterHub's prePuller.extraImages"
        )
    else:
        name = (pod.get("metadata") or {}).get("name", "<pod>")
        advice = f"see `kubectl logs {name} -c {CONTAINER_NAME}`"
    message = (
        f"the MCP sidecar ({CONTAINER_NAME}) is not started: {reason}"
        + (f" ({detail})" if detail else "")
        + "; the notebook waits for it, so this server's spawn fails at KubeSpawner's start_timeout; "
        + advice
    )
    return reason, message
