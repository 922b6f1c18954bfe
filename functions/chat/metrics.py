"""LLM metrics of the chat function, on the shared registry.

The `model` label is always `ChatSettings.model_label` of the model: a configured
model or "other", never a string a request chose (labels must stay bounded).
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import Counter, Histogram

from common.metrics import REGISTRY
from functions.chat.providers.base import TokenUsage

LLM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

llm_requests = Counter(
    "victor_llm_requests_total",
    "LLM calls, per provider, model and outcome (ok, cached, error, rejected, timeout)",
    ["provider", "model", "outcome"],
    registry=REGISTRY,
)
llm_tokens = Counter(
    "victor_llm_tokens_total",
    "LLM tokens, per provider, model and kind (input, output, cache_read, cache_write)",
    ["provider", "model", "kind"],
    registry=REGISTRY,
)
llm_cost = Counter(
    "victor_llm_cost_usd_total",
    "LLM cost in US dollars from the price table",
    ["provider", "model"],
    registry=REGISTRY,
)
llm_unpriced_calls = Counter(
    "victor_llm_unpriced_calls_total",
    "LLM calls of a model missing from the price table (their cost is unknown, not zero)",
    ["provider", "model"],
    registry=REGISTRY,
)
llm_duration = Histogram(
    "victor_llm_duration_seconds",
    "Duration of LLM calls, retries included",
    ["provider", "model"],
    buckets=LLM_BUCKETS,
    registry=REGISTRY,
)
llm_first_token = Histogram(
    "victor_llm_time_to_first_token_seconds",
    "Time from sending a streamed LLM call to its first text",
    ["provider", "model"],
    buckets=LLM_BUCKETS,
    registry=REGISTRY,
)


def record_call(provider: str, model: str, usage: TokenUsage, cost: Decimal | None, seconds: float) -> None:
    """Count one successful LLM call: its tokens by kind, its cost (None: unpriced) and its duration."""
    llm_requests.labels(provider, model, "ok").inc()
    for kind, count in (
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cache_read", usage.cache_read_tokens),
        ("cache_write", usage.cache_write_tokens),
    ):
        if count:
            llm_tokens.labels(provider, model, kind).inc(count)
    if cost is None:
        llm_unpriced_calls.labels(provider, model).inc()
    else:
        llm_cost.labels(provider, model).inc(float(cost))
    llm_duration.labels(provider, model).observe(seconds)
