"""The health function's handlers: check every dependency and every other function."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from common.answers import json_answer
from common.cloudevents import CloudEvent, new_event, now_rfc3339
from common.function import Call
from common.probes import check_dependency
from common.runtime import Runtime
from common.settings import FUNCTION_NAMES
from common.tracing import current_headers
from eventing.schemas.health import HEALTH_REPORTED, ComponentStatus, HealthReported

DEPENDENCIES = ("redis", "postgres")


async def check_function(runtime: Runtime[Any], name: str, url: str) -> ComponentStatus:
    """A function is up when its /health/ready answers 200."""
    started = time.perf_counter()
    try:
        response = await runtime.http.get(f"{url}/health/ready", timeout=3.0, headers=current_headers())
    except Exception as exc:  # any transport failure means the function is down
        return ComponentStatus(
            name=name,
            kind="function",
            state="down",
            error=type(exc).__name__,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )
    latency = round((time.perf_counter() - started) * 1000, 3)
    if response.status_code == 200:
        return ComponentStatus(name=name, kind="function", state="up", latency_ms=latency)
    return ComponentStatus(
        name=name,
        kind="function",
        state="down",
        latency_ms=latency,
        error=f"/health/ready answered {response.status_code}",
    )


async def system_status(runtime: Runtime[Any]) -> HealthReported:
    """Every dependency and every other function, checked concurrently."""
    dependency_checks = [check_dependency(runtime, name) for name in DEPENDENCIES]
    function_checks = [
        check_function(runtime, name, runtime.settings.function_urls[name])
        for name in FUNCTION_NAMES
        if name != runtime.spec.name and name in runtime.settings.function_urls
    ]
    dependencies, functions = await asyncio.gather(
        asyncio.gather(*dependency_checks), asyncio.gather(*function_checks)
    )
    components = [
        ComponentStatus(name=d.name, kind="dependency", state=d.state, latency_ms=d.latency_ms, error=d.error)
        for d in dependencies
    ] + list(functions)
    down = [c for c in components if c.state == "down"]
    status: Literal["ok", "degraded", "down"] = (
        "ok" if not down else "down" if len(down) == len(components) else "degraded"
    )
    return HealthReported(status=status, checked_at=now_rfc3339(), components=components)


async def v1_status(call: Call[None], runtime: Runtime[Any]) -> Any:
    """Every dependency and every other function with state and latency; 503 when all are down."""
    report = await system_status(runtime)
    return json_answer(503 if report.status == "down" else 200, report)


async def on_ping(event: CloudEvent, runtime: Runtime[Any]) -> CloudEvent:
    """A PingSource tick: run the checks and reply with `ai.victor.health.reported`."""
    report = await system_status(runtime)
    return new_event(HEALTH_REPORTED, runtime.source, report, subject=event.id)
