"""Health: dependency checks, the /health report and the liveness, startup and readiness probes.

Framework-free: the Litestar app and the functions-framework target answer the
probes with exactly these functions.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import msgspec

from common import metrics
from common.function import FunctionSpec
from common.runtime import VERSION, Runtime
from common.store import StoreUnavailable


class Unconfigured(Exception):
    """Raised by a health check whose dependency is optional and not configured (reported "unconfigured")."""


DependencyState = Literal["up", "down", "unconfigured"]


class DependencyStatus(msgspec.Struct, kw_only=True):
    name: str
    state: DependencyState
    required: bool
    latency_ms: float | None = None
    error: str | None = None


class HealthReport(msgspec.Struct, kw_only=True):
    function: str
    version: str
    status: Literal["ok", "degraded", "down"]
    ready: bool
    started: bool
    dependencies: list[DependencyStatus]


async def _builtin_check(runtime: Runtime[Any], name: str) -> None:
    if name == "redis":
        await runtime.cache.ping()
    elif name == "postgres":
        await runtime.store.ping()
    elif name == "lancedb":
        await asyncio.to_thread(lambda: list(runtime.lancedb().table_names()))
    else:
        raise KeyError(name)


def _configured(runtime: Runtime[Any], name: str) -> bool:
    if name == "redis":
        return runtime.cache.configured
    if name == "postgres":
        return runtime.store.configured
    return True


async def check_dependency(runtime: Runtime[Any], name: str, timeout: float = 2.0) -> DependencyStatus:
    required = name in runtime.spec.requires
    if not _configured(runtime, name):
        return DependencyStatus(name=name, state="unconfigured", required=required)
    check = runtime.spec.checks.get(name)
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(runtime) if check else _builtin_check(runtime, name), timeout)
    except Unconfigured as exc:
        return DependencyStatus(name=name, state="unconfigured", required=required, error=str(exc))
    except Exception as exc:  # a health check reports every failure, whatever its kind
        message = str(exc) if isinstance(exc, StoreUnavailable | RuntimeError) else type(exc).__name__
        metrics.dependency_up.labels(runtime.spec.name, name).set(0)
        return DependencyStatus(
            name=name,
            state="down",
            required=required,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            error=message or "timed out",
        )
    metrics.dependency_up.labels(runtime.spec.name, name).set(1)
    return DependencyStatus(
        name=name,
        state="up",
        required=required,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def reported_dependencies(spec: FunctionSpec) -> list[str]:
    names = list(spec.reports) or [*spec.requires, *spec.checks]
    return list(dict.fromkeys(names))


async def check_health(runtime: Runtime[Any]) -> HealthReport:
    """Every reported dependency's state and latency, checked concurrently."""
    statuses = await asyncio.gather(
        *(check_dependency(runtime, name) for name in reported_dependencies(runtime.spec))
    )
    ready = runtime.started and all(s.state == "up" for s in statuses if s.required)
    all_up = all(s.state != "down" for s in statuses)
    status: Literal["ok", "degraded", "down"] = "ok" if ready and all_up else "degraded" if ready else "down"
    return HealthReport(
        function=runtime.spec.name,
        version=VERSION,
        status=status,
        ready=ready,
        started=runtime.started,
        dependencies=list(statuses),
    )


async def is_ready(runtime: Runtime[Any]) -> tuple[bool, list[DependencyStatus]]:
    """Ready when started and every required dependency is up."""
    if not runtime.started:
        return False, []
    statuses = await asyncio.gather(*(check_dependency(runtime, name) for name in runtime.spec.requires))
    return all(s.state == "up" for s in statuses), list(statuses)


# The answers of the shared probe routes: both serving modes serve exactly these.

LIVE: tuple[int, dict[str, str]] = (200, {"status": "alive"})


def startup_state(runtime: Runtime[Any]) -> tuple[int, dict[str, str]]:
    """200 once the function's start has finished; 503 while starting or after it failed."""
    if runtime.started:
        return 200, {"status": "started"}
    if runtime.startup_error:
        return 503, {"status": "failed", "error": runtime.startup_error}
    return 503, {"status": "starting"}


async def readiness(runtime: Runtime[Any]) -> tuple[int, dict[str, str]]:
    """200 when started and every required dependency answers, else 503 with the reason."""
    ok, statuses = await is_ready(runtime)
    if ok:
        return 200, {"status": "ready"}
    if runtime.startup_error:
        return 503, {"status": "not ready", "reason": "start failed; see /health/startup"}
    if not runtime.started:
        return 503, {"status": "not ready", "reason": "starting"}
    down = [s.name for s in statuses if s.state != "up"]
    return 503, {"status": "not ready", "reason": "waiting for " + ", ".join(down)}


async def health_state(runtime: Runtime[Any]) -> tuple[int, HealthReport]:
    """The /health report; 503 when the function is not ready."""
    report = await check_health(runtime)
    return (200 if report.ready else 503), report
