"""What the operator is allowed to do, written once: the render test compares the chart's RBAC to
it exactly (a Role in the release namespace, nothing cluster-wide) and the install test proves each
entry (and nothing more) against a real API server."""

from __future__ import annotations

# (apiGroup, resource, verbs) in the release namespace: what the operator's code and kopf call.
NAMESPACED: list[tuple[str, str, tuple[str, ...]]] = [
    ("", "pods", ("get", "list", "watch")),
    ("", "services", ("create", "patch")),
    ("networking.k8s.io", "ingresses", ("create", "patch", "delete")),
    ("networking.k8s.io", "networkpolicies", ("create", "patch", "delete")),
    ("", "secrets", ("create", "get", "list", "watch", "patch", "update", "delete")),
    ("", "events", ("create",)),
    ("mcp.jupyterhub.org", "mcppolicies", ("get", "list", "watch")),
    ("mcp.jupyterhub.org", "mcppolicies/status", ("patch",)),
]


def flatten(entries: list[tuple[str, str, tuple[str, ...]]]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for group, resource, verbs in entries for verb in verbs}


def flatten_rules(rules: list[dict]) -> set[tuple[str, str, str]]:
    """A Role's rules as (apiGroup, resource, verb) triples."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }
