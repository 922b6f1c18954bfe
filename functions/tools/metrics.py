"""The tools function's Prometheus metrics, on the shared registry."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from common.metrics import LATENCY_BUCKETS, REGISTRY

tool_executions = Counter(
    "victor_tool_executions_total",
    "Tool calls run, per tool and outcome (ok, error, timeout, cached)",
    ["tool", "outcome"],
    registry=REGISTRY,
)
tool_duration = Histogram(
    "victor_tool_duration_seconds",
    "Duration of tool calls, per tool",
    ["tool"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
