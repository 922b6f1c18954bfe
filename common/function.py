"""What a function is, and the framework-free core every serving mode shares.

A function (as in Knative's Python templates) is one `FunctionSpec`: its name,
its event handlers by CloudEvent type, its HTTP routes, the dependencies its
readiness requires, and optional `start`/`stop`. `Runtime` holds what the
handlers use (settings, cache, store, HTTP client). `handle_event_request` and
`check_health` are plain async functions over headers and bytes, used by the
Litestar app and by the functions-framework entry point alike.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from common import metrics, tracing
from common.cache import Cache
from common.cloudevents import CloudEvent, CloudEventError, from_http, to_binary
from common.idempotency import ProcessedEvents
from common.logging import event_id
from common.settings import Settings
from common.store import Store, StoreUnavailable, open_lancedb

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
VERSION = "0.1.0"

EventHandler = Callable[[CloudEvent, "Runtime"], Awaitable[CloudEvent | None]]
Check = Callable[["Runtime"], Awaitable[None]]
Lifecycle = Callable[["Runtime"], Awaitable[None]]


class EventRejected(Exception):
    """A handler refuses an event for good (a 4xx that the broker does not retry)."""

    def __init__(self, status: int, message: str, code: str = "rejected") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class TransientFailure(Exception):
    """A handler cannot finish now but may later (503: the broker retries)."""


class Unconfigured(Exception):
    """Raised by a health check whose dependency is optional and not configured (reported "unconfigured")."""


@dataclass(frozen=True)
class FunctionSpec:
    """One function: handlers, routes, readiness dependencies and lifecycle."""

    name: str
    event_handlers: Mapping[str, EventHandler] = field(default_factory=dict)
    routes: Sequence[Any] = ()
    # Built-in dependency names ("redis", "postgres", "lancedb") or names of `checks`.
    requires: Sequence[str] = ()
    checks: Mapping[str, Check] = field(default_factory=dict)
    # Dependencies reported in /health; defaults to the required ones plus `checks`.
    reports: Sequence[str] = ()
    start: Lifecycle | None = None
    stop: Lifecycle | None = None
    uses_lancedb: bool = False
    # When true, `start` runs beside the server (model loading, say): liveness answers at
    # once and /health/startup stays 503 until it finishes (or reports its failure).
    start_in_background: bool = False


@dataclass
class Runtime:
    """What handlers of one function process share."""

    spec: FunctionSpec
    settings: Settings
    cache: Cache
    store: Store
    processed: ProcessedEvents
    state: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    startup_error: str | None = None
    _lancedb: Any = None
    _http: Any = None  # an httpx.AsyncClient; typed loosely since Litestar resolves these hints at run time
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def create(cls, spec: FunctionSpec, settings: Settings) -> Runtime:
        store = Store(settings.database_dsn)
        return cls(
            spec=spec,
            settings=settings,
            cache=Cache(settings.redis_url),
            store=store,
            processed=ProcessedEvents(spec.name, store),
        )

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client, made on first use: importing httpx and loading CA certificates
        took about a tenth of a second of cold start, and some functions never call out."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        client: httpx.AsyncClient = self._http
        return client

    @property
    def source(self) -> str:
        """The `source` of events this function produces."""
        return f"/victor/{self.spec.name}"

    def lancedb(self) -> Any:
        if self._lancedb is None:
            self._lancedb = open_lancedb(self.settings.lancedb_uri)
        return self._lancedb

    def background(self, coroutine: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run work beside the server (kept referenced, cancelled at stop)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        if self.spec.start is not None and self.spec.start_in_background:
            self.background(self._start_beside_server(self.spec.start), f"{self.spec.name}-start")
            return
        if self.spec.start is not None:
            try:
                await self.spec.start(self)
            except Exception as exc:
                self.startup_error = f"{type(exc).__name__}: {exc}"
                raise
        self.started = True

    async def _start_beside_server(self, start: Lifecycle) -> None:
        try:
            await start(self)
        except Exception as exc:  # any start failure is reported by /health/startup, not raised
            self.startup_error = f"{type(exc).__name__}: {exc}"
            log.error("%s failed to start: %s", self.spec.name, self.startup_error)
            return
        self.started = True

    async def stop(self) -> None:
        if self.spec.stop is not None:
            await self.spec.stop(self)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        await self.cache.close()
        await self.store.close()


def exit_cleanly_after_graceful_shutdown() -> None:
    """Make SIGTERM end the process with status 0 once uvicorn has finished in-flight requests.

    uvicorn (under `victor serve` and functions-framework --asgi) re-raises SIGTERM after its graceful
    shutdown; with this handler in place that re-raise exits 0 instead of killing the process.
    Call it from an entry point module, never from a library import.
    """
    signal.signal(signal.SIGTERM, _exit_zero)


def _exit_zero(signum: int, frame: object) -> None:
    raise SystemExit(0)


# ---------------------------------------------------------------- health


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


async def _builtin_check(runtime: Runtime, name: str) -> None:
    if name == "redis":
        await runtime.cache.ping()
    elif name == "postgres":
        await runtime.store.ping()
    elif name == "lancedb":
        await asyncio.to_thread(lambda: list(runtime.lancedb().table_names()))
    else:
        raise KeyError(name)


def _configured(runtime: Runtime, name: str) -> bool:
    if name == "redis":
        return runtime.cache.configured
    if name == "postgres":
        return runtime.store.configured
    return True


async def check_dependency(runtime: Runtime, name: str, timeout: float = 2.0) -> DependencyStatus:
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


async def check_health(runtime: Runtime) -> HealthReport:
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


async def is_ready(runtime: Runtime) -> tuple[bool, list[DependencyStatus]]:
    """Ready when started and every required dependency is up."""
    if not runtime.started:
        return False, []
    statuses = await asyncio.gather(*(check_dependency(runtime, name) for name in runtime.spec.requires))
    return all(s.state == "up" for s in statuses), list(statuses)


# ---------------------------------------------------------------- probes
# The answers of the shared routes, framework-free: the Litestar app and the
# functions-framework target both serve exactly these.

LIVE: tuple[int, dict[str, str]] = (200, {"status": "alive"})


def startup_state(runtime: Runtime) -> tuple[int, dict[str, str]]:
    """200 once the function's start has finished; 503 while starting or after it failed."""
    if runtime.started:
        return 200, {"status": "started"}
    if runtime.startup_error:
        return 503, {"status": "failed", "error": runtime.startup_error}
    return 503, {"status": "starting"}


async def readiness(runtime: Runtime) -> tuple[int, dict[str, str]]:
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


async def health_state(runtime: Runtime) -> tuple[int, HealthReport]:
    """The /health report; 503 when the function is not ready."""
    report = await check_health(runtime)
    return (200 if report.ready else 503), report


API_KEY_REQUIRED = "a valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def api_key_accepted(settings: Settings, headers: Mapping[str, str]) -> bool:
    """Whether a request to a function's own routes may pass: no VICTOR_API_KEY set, or it offers the key."""
    if settings.api_key is None:
        return True
    lowered = {key.lower(): value for key, value in headers.items()}
    offered = lowered.get("x-api-key", "")
    authorization = lowered.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        offered = authorization[7:].strip()
    return bool(offered) and hmac.compare_digest(offered.encode(), settings.api_key.reveal().encode())


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, independent of any web framework."""

    status: int
    headers: dict[str, str]
    body: bytes


def error_answer(status: int, code: str, message: str) -> Answer:
    body = msgspec.json.encode({"status_code": status, "error": code, "detail": message})
    return Answer(status, {"content-type": "application/json"}, body)


def internal_error_answer() -> Answer:
    """500 for an unexpected failure: a JSON body that points at the logs, never a traceback."""
    return error_answer(500, "internal_error", "the request failed; see the function's logs")


def not_found_answer(path: str) -> Answer:
    """404 for a path no route serves, the same in every serving mode."""
    return error_answer(404, "not_found", f"no route {path}")


def method_not_allowed_answer(path: str, allowed: Sequence[str]) -> Answer:
    """405 naming the methods `path` accepts (also in the Allow header)."""
    methods = ", ".join(sorted(allowed))
    answer = error_answer(405, "method_not_allowed", f"{path} accepts {methods}")
    return Answer(405, {**answer.headers, "allow": methods}, answer.body)


def too_large_answer(limit: int) -> Answer:
    """413 for a request body over VICTOR_MAX_EVENT_BYTES, the same in every serving mode."""
    return error_answer(
        413, "too_large", f"the request body is over the limit of {limit} bytes (VICTOR_MAX_EVENT_BYTES)"
    )


def reply_answer(reply: CloudEvent | None) -> Answer:
    """202 with an empty body, or 200 with exactly one CloudEvent in binary mode."""
    if reply is None:
        return Answer(202, {}, b"")
    headers, body = to_binary(reply)
    return Answer(200, headers, body)


async def handle_event_request(runtime: Runtime, headers: Mapping[str, str], body: bytes) -> Answer:
    """Parse, de-duplicate and handle one delivered CloudEvent; never raises."""
    name = runtime.spec.name
    try:
        event = from_http(headers, body, max_bytes=runtime.settings.max_event_bytes)
    except CloudEventError as exc:
        metrics.events.labels(name, "invalid", "rejected").inc()
        return error_answer(exc.status, exc.code, exc.message)
    handler = runtime.spec.event_handlers.get(event.type)
    if handler is None:
        metrics.events.labels(name, "unsupported", "rejected").inc()
        accepted = ", ".join(sorted(runtime.spec.event_handlers)) or "none"
        return error_answer(
            400,
            "unsupported_event_type",
            f"function {name} does not handle events of type {event.type!r}; it handles: {accepted}",
        )
    token = event_id.set(event.id)
    try:
        parent = tracing.context_from_event(event, headers)
        with tracing.tracer(__name__).start_as_current_span(
            f"{name} {event.type}", context=parent, attributes={"cloudevents.event_id": event.id}
        ):
            return await _handle(runtime, handler, event)
    finally:
        event_id.reset(token)


async def _handle(runtime: Runtime, handler: EventHandler, event: CloudEvent) -> Answer:
    name = runtime.spec.name
    outcome = metrics.events.labels
    try:
        claim = await runtime.processed.claim(event)
    except StoreUnavailable as exc:
        outcome(name, event.type, "unavailable").inc()
        return error_answer(503, "store_unavailable", str(exc))
    if claim.state == "done":
        outcome(name, event.type, "duplicate").inc()
        log.info("event %s from %s already handled; returning the stored reply", event.id, event.source)
        return reply_answer(claim.reply)
    if claim.state == "running":
        outcome(name, event.type, "busy").inc()
        return error_answer(409, "in_progress", f"event {event.id} is being handled; retry later")
    try:
        reply = await handler(event, runtime)
    except (CloudEventError, EventRejected) as exc:
        await runtime.processed.release(event)
        outcome(name, event.type, "rejected").inc()
        return error_answer(exc.status, exc.code, exc.message)
    except (TransientFailure, StoreUnavailable) as exc:
        await runtime.processed.release(event)
        outcome(name, event.type, "retry").inc()
        return error_answer(503, "unavailable", str(exc))
    except Exception:
        await runtime.processed.release(event)
        outcome(name, event.type, "failed").inc()
        log.exception("handler for %s failed", event.type)
        return error_answer(500, "internal_error", f"handling event {event.id} failed; it will be retried")
    if reply is not None:
        conversation = event.extensions.get("conversationid")
        if conversation and "conversationid" not in reply.extensions:
            reply = reply.with_extensions(conversationid=conversation)
        reply = tracing.with_trace(reply)
    try:
        await runtime.processed.finish(event, reply)
    except StoreUnavailable:  # the work is done; a redelivery may repeat it, which is the lesser harm
        log.warning("could not record event %s as handled: PostgreSQL is unavailable", event.id)
    outcome(name, event.type, "replied" if reply is not None else "accepted").inc()
    return reply_answer(reply)
