"""Prometheus metrics of the operator (served on the health port at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOK_LATENCY = Histogram(
    "mcp_operator_webhook_duration_seconds",
    "Time to answer one AdmissionReview, from request body read to response ready.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
INJECTIONS = Counter(
    "mcp_operator_admissions_total",
    "Pods seen by the webhook, by outcome (injected, no-policy, already-injected, error, ...).",
    ["outcome"],
)
RECONCILE_ERRORS = Counter(
    "mcp_operator_reconcile_errors_total",
    "Failed attempts to write the children of a pod or the status of a policy.",
    ["kind"],
)
CHILDREN_APPLIED = Counter(
    "mcp_operator_children_applied_total", "Children (Service/Ingress/NetworkPolicy) applied.", ["kind"]
)
API_REQUESTS = Counter(
    "mcp_operator_api_requests_total", "Kubernetes API requests made by the operator, by verb.", ["verb"]
)
RECONCILE_PASSES = Counter(
    "mcp_operator_reconcile_passes_total", "Periodic reconcile passes, by outcome (ok, error).", ["outcome"]
)
RECONCILE_REPAIRS = Counter(
    "mcp_operator_reconcile_repairs_total",
    "What periodic passes found drifted and repaired (child-applied, child-deleted, token-reissued).",
    ["action"],
)
LAST_PASS = Gauge(
    "mcp_operator_reconcile_last_pass",
    "The latest periodic pass: seconds it took, pods it looked at, API writes it made.",
    ["measure"],
)
PROXY_REQUESTS = Counter(
    "mcp_operator_proxy_requests_total",
    "configurable-http-proxy API requests made by the operator, by verb (list, add, delete).",
    ["verb"],
)
