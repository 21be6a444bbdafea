"""MCPPolicy: parse with defaults, match user pods, pick the winner (pure, no I/O).

The API server applies the CRD's defaults, but local mode and unit tests hand in partial specs,
so the same defaults live here too (kept equal to crds/mcppolicy.yaml by a unit test).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from mcp_operator.constants import ANN_GROUPS, ANN_SERVERNAME, ANN_USERNAME

# KubeSpawner does not put hub groups on pods; a hub that wants group selection sets ANN_GROUPS
# (comma-separated) through KubeSpawner's extra_annotations, e.g. in a pre_spawn_hook.

MODES = ("read-only", "edit", "execute")
# How /user/<name>/mcp reaches the sidecar: a route in configurable-http-proxy (Zero to JupyterHub's
# default topology: proxy-public -> CHP -> pod), an Ingress, a Gateway API HTTPRoute, or nothing.
ROUTE_MODES = ("proxy", "ingress", "gateway", "none")
DEFAULT_PORT = 8890
# From bench/memory_bench.py (2026-12-03): idle 77 MiB, 118 MiB after 5 000 sessions, peak 491 MiB
# for a 40 MB PNG saved into a notebook cell (219 MiB from scratch code).
DEFAULT_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "10m", "memory": "96Mi"},
    "limits": {"memory": "512Mi"},
}
DEFAULT_MOUNT_PATH = "/home/jovyan/.mcp"
NOTEBOOK_PORT = 8888


class PolicyError(ValueError):
    """An MCPPolicy the operator cannot use; the message says which field and why."""


@dataclass(frozen=True)
class Selection:
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    pod_selector: Mapping[str, Any] | None = None
    exclude_users: tuple[str, ...] = ()
    priority: int = 0


@dataclass(frozen=True)
class Sidecar:
    # None: the operator's image (--sidecar-image, the chart's sidecar.image) is used. The CRD has
    # no default here on purpose, so the admin's operator-wide choice reaches every such policy.
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    port: int = DEFAULT_PORT
    resources: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    env: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Tools:
    mode: str = "execute"
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class Execution:
    timeout_seconds: int = 30
    max_timeout_seconds: int = 600
    output_max_chars: int = 20_000
    output_max_image_bytes: int = 1_048_576


@dataclass(frozen=True)
class Route:
    mode: str = "proxy"
    ingress_class_name: str | None = None
    host: str | None = None
    tls_secret_name: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    # mode gateway: the Gateways the HTTPRoute attaches to (Gateway API ParentReference objects)
    parent_refs: tuple[Mapping[str, Any], ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether anything routes the endpoint (`route.enabled: false` is mode `none`)."""
        return self.mode != "none"


@dataclass(frozen=True)
class Network:
    enabled: bool = True
    # {"namespaceSelector": ..., "podSelector": ...}; None: the operator's --ingress-controller-selector
    ingress_controller_selector: Mapping[str, Any] | None = None
    # mode gateway: the gateway's pods; None: by the standard label of each parent Gateway's pods
    gateway_selector: Mapping[str, Any] | None = None
    # more NetworkPolicy peers (e.g. ipBlocks of a cloud load balancer), after the operator's own
    extra_peers: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Tokens:
    issue: bool = False
    ttl_seconds: int = 86400
    rotate_before_seconds: int = 21600
    mount_path: str = DEFAULT_MOUNT_PATH


@dataclass(frozen=True)
class Auth:
    # Admit hand-made `access:servers` tokens besides the MCP custom scopes (false: MCP tokens only).
    accept_server_access: bool = True


@dataclass(frozen=True)
class Audit:
    enabled: bool = True
    include_code: bool = False


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str = ""
    generation: int = 1
    selection: Selection = field(default_factory=Selection)
    sidecar: Sidecar = field(default_factory=Sidecar)
    tools: Tools = field(default_factory=Tools)
    execution: Execution = field(default_factory=Execution)
    route: Route = field(default_factory=Route)
    network: Network = field(default_factory=Network)
    tokens: Tokens = field(default_factory=Tokens)
    audit: Audit = field(default_factory=Audit)
    auth: Auth = field(default_factory=Auth)

    @property
    def marker(self) -> str:
        """The value of the pod annotation `mcp.jupyterhub.org/injected`."""
        return f"{self.name}/{self.generation}"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Policy:
        """Parse an MCPPolicy object (as the API server returns it, or a partial one)."""
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise PolicyError("MCPPolicy has no metadata.name")
        spec = _section(obj, "spec", name)
        sel, side, tools, exe, route, net, tok, audit, auth = (
            _section(spec, key, name)
            for key in (
                "selection",
                "sidecar",
                "tools",
                "execution",
                "route",
                "network",
                "tokens",
                "audit",
                "auth",
            )
        )

        policy = cls(
            name=name,
            namespace=meta.get("namespace") or "",
            generation=int(meta.get("generation") or 1),
            selection=Selection(
                users=_strings(sel, "users", name),
                groups=_strings(sel, "groups", name),
                pod_selector=sel.get("podSelector") or None,
                exclude_users=_strings(sel, "excludeUsers", name),
                priority=_int(sel, "priority", 0, name),
            ),
            sidecar=Sidecar(
                image=side.get("image") or None,
                image_pull_policy=side.get("imagePullPolicy") or "IfNotPresent",
                port=_int(side, "port", DEFAULT_PORT, name),
                resources=side.get("resources") or dict(DEFAULT_RESOURCES),
                env=tuple(side.get("env") or ()),
            ),
            tools=Tools(
                mode=tools.get("mode") or "execute",
                allow=_strings(tools, "allow", name),
                deny=_strings(tools, "deny", name),
            ),
            execution=Execution(
                timeout_seconds=_int(exe, "timeoutSeconds", 30, name),
                max_timeout_seconds=_int(exe, "maxTimeoutSeconds", 600, name),
                output_max_chars=_int(exe, "outputMaxChars", 20_000, name),
                output_max_image_bytes=_int(exe, "outputMaxImageBytes", 1_048_576, name),
            ),
            route=Route(
                # `enabled: false` (before route modes) keeps meaning: no route at all
                mode="none" if route.get("enabled", True) is False else (route.get("mode") or "proxy"),
                ingress_class_name=route.get("ingressClassName") or None,
                host=route.get("host") or None,
                tls_secret_name=route.get("tlsSecretName") or None,
                annotations=dict(route.get("annotations") or {}),
                parent_refs=_objects(route, "parentRefs", name),
            ),
            network=Network(
                enabled=bool(net.get("enabled", True)),
                ingress_controller_selector=net.get("ingressControllerSelector") or None,
                gateway_selector=net.get("gatewaySelector") or None,
                extra_peers=_objects(net, "extraPeers", name),
            ),
            tokens=Tokens(
                issue=bool(tok.get("issue", False)),
                ttl_seconds=_int(tok, "ttlSeconds", 86400, name),
                rotate_before_seconds=_int(tok, "rotateBeforeSeconds", 21600, name),
                mount_path=tok.get("mountPath") or DEFAULT_MOUNT_PATH,
            ),
            audit=Audit(
                enabled=bool(audit.get("enabled", True)), include_code=bool(audit.get("includeCode", False))
            ),
            auth=Auth(accept_server_access=bool(auth.get("acceptServerAccess", True))),
        )
        policy.validate()
        return policy

    def validate(self) -> None:
        where = f"MCPPolicy {self.name}"
        if self.tools.mode not in MODES:
            raise PolicyError(f"{where}: spec.tools.mode must be one of {MODES}, got {self.tools.mode!r}")
        if self.route.mode not in ROUTE_MODES:
            raise PolicyError(
                f"{where}: spec.route.mode must be one of {ROUTE_MODES}, got {self.route.mode!r}"
            )
        if not 1024 <= self.sidecar.port <= 65535 or self.sidecar.port == NOTEBOOK_PORT:
            raise PolicyError(
                f"{where}: spec.sidecar.port must be 1024-65535 and not the notebook port "
                f"{NOTEBOOK_PORT}, got {self.sidecar.port}"
            )
        if not 0 < self.execution.timeout_seconds <= self.execution.max_timeout_seconds:
            raise PolicyError(f"{where}: need 0 < spec.execution.timeoutSeconds <= maxTimeoutSeconds")
        if self.tokens.ttl_seconds <= 0:
            raise PolicyError(
                f"{where}: spec.tokens.ttlSeconds must be positive, not {self.tokens.ttl_seconds}"
            )
        if not 0 <= self.tokens.rotate_before_seconds < self.tokens.ttl_seconds:
            # a window not shorter than the TTL would re-mint at every check
            raise PolicyError(
                f"{where}: spec.tokens.rotateBeforeSeconds ({self.tokens.rotate_before_seconds}) must be "
                f">= 0 and shorter than spec.tokens.ttlSeconds ({self.tokens.ttl_seconds})"
            )
        if not self.tokens.mount_path.startswith("/"):
            raise PolicyError(f"{where}: spec.tokens.mountPath must be absolute: {self.tokens.mount_path!r}")


def _section(parent: Mapping[str, Any], key: str, policy: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(f"MCPPolicy {policy}: {key} must be an object, got {type(value).__name__}")
    return value


def _strings(section: Mapping[str, Any], key: str, policy: str) -> tuple[str, ...]:
    value = section.get(key) or ()
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"MCPPolicy {policy}: {key} must be a list of strings")
    return tuple(value)


def _objects(section: Mapping[str, Any], key: str, policy: str) -> tuple[Mapping[str, Any], ...]:
    value = section.get(key) or ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, Mapping) for v in value):
        raise PolicyError(f"MCPPolicy {policy}: {key} must be a list of objects")
    return tuple(value)


def _int(section: Mapping[str, Any], key: str, default: int, policy: str) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"MCPPolicy {policy}: {key} must be an integer, got {value!r}")
    return value


# --- matching --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodIdentity:
    """Who a KubeSpawner pod belongs to, from its annotations."""

    user: str
    server_name: str
    groups: frozenset[str]

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodIdentity | None:
        """None for a pod without the hub's username annotation (not a KubeSpawner user pod)."""
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        user = annotations.get(ANN_USERNAME)
        if not user:
            return None
        groups = frozenset(g.strip() for g in (annotations.get(ANN_GROUPS) or "").split(",") if g.strip())
        return cls(user=user, server_name=annotations.get(ANN_SERVERNAME) or "", groups=groups)


def _any_glob(name: str, patterns: Iterable[str]) -> bool:
    # Case-sensitive: hub names are case-sensitive (the hub normalises them before spawning).
    return any(fnmatchcase(name, p) for p in patterns)


def labels_match(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels + matchExpressions) against a label set."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or ())
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def matches(policy: Policy, pod: Mapping[str, Any]) -> bool:
    identity = PodIdentity.of(pod)
    if identity is None:
        return False
    sel = policy.selection
    if _any_glob(identity.user, sel.exclude_users):
        return False
    if sel.users and not _any_glob(identity.user, sel.users):
        return False
    if sel.groups and not identity.groups.intersection(sel.groups):
        return False
    return labels_match(sel.pod_selector, (pod.get("metadata") or {}).get("labels") or {})


def select_policy(policies: Iterable[Policy], pod: Mapping[str, Any]) -> Policy | None:
    """The matching policy with the highest priority; ties go to the name that sorts first, so the
    answer never depends on the order the policies arrived in."""
    candidates: Sequence[Policy] = [p for p in policies if matches(p, pod)]
    if not candidates:
        return None
    return min(candidates, key=lambda p: (-p.selection.priority, p.name))
