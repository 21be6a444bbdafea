"""Prometheus metrics of the sidecar, on a registry of its own (not prometheus_client's global one).

One registry per process: the counters are module-level so any module can count with a plain
function call (``record_execution()``, ``record_truncation()``), and ``render()`` serves them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

TOOL_CALLS = Counter(
    "mcp_tool_calls_total", "Tool calls by tool and outcome.", ["tool", "outcome"], registry=REGISTRY
)
TOOL_LATENCY = Histogram(
    "mcp_tool_duration_seconds",
    "Tool call duration by tool.",
    ["tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "mcp_auth_failures_total",
    "Refused requests by reason (missing, invalid, forbidden, hub_unavailable).",
    ["reason"],
    registry=REGISTRY,
)
HUB_AUTH_REQUESTS = Counter(
    "mcp_hub_auth_requests_total", "Token lookups sent to the hub (cache misses).", registry=REGISTRY
)
KERNEL_EXECUTIONS = Counter(
    "mcp_kernel_executions_total",
    "Code executions sent to a kernel, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
OUTPUT_TRUNCATIONS = Counter(
    "mcp_output_truncations_total",
    "Tool answers cut to the output limits, by kind.",
    ["kind"],
    registry=REGISTRY,
)
ACTIVITY_POSTS = Counter(
    "mcp_activity_posts_total", "Activity reports to the hub, by outcome.", ["outcome"], registry=REGISTRY
)


def record_tool_call(tool: str, outcome: str, seconds: float) -> None:
    TOOL_CALLS.labels(tool=tool, outcome=outcome).inc()
    TOOL_LATENCY.labels(tool=tool).observe(seconds)


def record_auth_failure(reason: str) -> None:
    AUTH_FAILURES.labels(reason=reason).inc()


def record_hub_auth_request() -> None:
    HUB_AUTH_REQUESTS.inc()


def record_execution(outcome: str = "ok") -> None:
    """One code execution in a kernel (outcome e.g. ok, error, timeout, interrupted)."""
    KERNEL_EXECUTIONS.labels(outcome=outcome).inc()


def record_truncation(kind: str = "text") -> None:
    """A tool answer cut to the output limits (kind e.g. text, image)."""
    OUTPUT_TRUNCATIONS.labels(kind=kind).inc()


def record_activity_post(outcome: str) -> None:
    ACTIVITY_POSTS.labels(outcome=outcome).inc()


def render() -> tuple[bytes, str]:
    """The exposition body and its content type, for the /metrics route."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
