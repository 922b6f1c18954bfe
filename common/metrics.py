"""Prometheus metrics every function emits, with the names users query.

One registry per process. The shared app records request metrics and event
counters; caches call `record_cache` so `victor_cache_hit_ratio` stays current.
The registry also carries the process's own CPU, memory, file descriptor and
garbage-collector metrics (`process_*`, `python_*`) and, where the container has a
memory limit, `victor_memory_limit_bytes`, so the System resources dashboard and
the memory alert need nothing but the functions' own /metrics.
"""

from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

# cgroup v2, then v1: where a container's memory limit is readable from inside it.
MEMORY_LIMIT_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
# cgroup v1 reports "no limit" as a huge number rather than "max".
_UNLIMITED = 1 << 60

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

api_requests = Counter(
    "victor_api_requests_total",
    "HTTP requests served",
    ["function", "method", "route", "status"],
    registry=REGISTRY,
)
api_duration = Histogram(
    "victor_api_duration_seconds",
    "HTTP request duration",
    ["function", "method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
api_errors = Counter(
    "victor_api_errors_total",
    "HTTP requests answered 4xx or 5xx",
    ["function", "route", "status"],
    registry=REGISTRY,
)
events = Counter(
    "victor_events_total",
    "CloudEvents received by a function, per type and outcome",
    ["function", "type", "outcome"],
    registry=REGISTRY,
)
events_published = Counter(
    "victor_events_published_total",
    "CloudEvents sent to the broker, per type and outcome",
    ["type", "outcome"],
    registry=REGISTRY,
)
rate_limited = Counter(
    "victor_rate_limited_total",
    "Requests refused 429 because their API key used up VICTOR_RATE_LIMIT",
    ["function"],
    registry=REGISTRY,
)
rate_limit_unchecked = Counter(
    "victor_rate_limit_unchecked_total",
    "Requests served without a rate-limit check because Redis was unavailable (fail-open)",
    ["function"],
    registry=REGISTRY,
)
cache_requests = Counter(
    "victor_cache_requests_total",
    "Cache look-ups, per cache and result (hit or miss)",
    ["cache", "result"],
    registry=REGISTRY,
)
cache_hit_ratio = Gauge(
    "victor_cache_hit_ratio",
    "Hits over look-ups since start, per cache",
    ["cache"],
    registry=REGISTRY,
)
dependency_up = Gauge(
    "victor_dependency_up",
    "1 when the dependency answered its last health check",
    ["function", "dependency"],
    registry=REGISTRY,
)


def memory_limit(files: tuple[Path, ...] = MEMORY_LIMIT_FILES) -> int | None:
    """The container's memory limit in bytes, or None when there is none (or it cannot be read)."""
    for path in files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < _UNLIMITED:
            return int(text)
        return None
    return None


class MemoryLimitCollector(Collector):
    """`victor_memory_limit_bytes`, exposed only where the container has a limit (else no series,
    so `process_resident_memory_bytes / victor_memory_limit_bytes` has nothing to divide by)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> list[Metric]:
        if self.limit is None:
            return []
        family = self._family()
        family.add_metric([], float(self.limit))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "victor_memory_limit_bytes", "The container's memory limit (cgroup), where it has one"
        )


REGISTRY.register(MemoryLimitCollector(memory_limit()))

_cache_counts: dict[str, list[int]] = {}
_lock = threading.Lock()


def record_cache(cache: str, *, hit: bool) -> None:
    """Count one look-up in `cache` and update its hit ratio."""
    cache_requests.labels(cache, "hit" if hit else "miss").inc()
    with _lock:
        counts = _cache_counts.setdefault(cache, [0, 0])
        counts[0] += int(hit)
        counts[1] += 1
        cache_hit_ratio.labels(cache).set(counts[0] / counts[1])


def record_request(function: str, method: str, route: str, status: int, seconds: float) -> None:
    """Count and time one HTTP request by its route template (4xx and 5xx also count as errors)."""
    api_requests.labels(function, method, route, str(status)).inc()
    api_duration.labels(function, method, route).observe(seconds)
    if status >= 400:
        api_errors.labels(function, route, str(status)).inc()


def exposition() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve_separately(port: int) -> None:
    """Also serve /metrics on `port` (compose only; on Knative /metrics is on the main port)."""
    start_http_server(port, registry=REGISTRY)
