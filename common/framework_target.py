"""A functions-framework HTTP target built from a `FunctionSpec`.

`functions-framework --asgi --target handle --source functions/<name>/main.py`
serves every path through one async function of a Starlette request. This
module makes that function: it serves the same shared routes as the Litestar
app (probes, /health, /metrics, `POST /` for CloudEvents) through the same
framework-free core in `common.function`, plus the function's own routes given
as `extra_routes`. The functions-framework `cloud_event` signature is not used
on purpose: it answers every event with a plain "OK" body, which a Knative
Trigger turns into a 502.

There is no lifespan under functions-framework, so the runtime is created and
started on the first request (once, under a lock).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from common import metrics, tracing
from common.function import (
    API_KEY_REQUIRED,
    LIVE,
    Answer,
    FunctionSpec,
    Runtime,
    api_key_accepted,
    error_answer,
    exit_cleanly_after_graceful_shutdown,
    handle_event_request,
    health_state,
    internal_error_answer,
    method_not_allowed_answer,
    not_found_answer,
    readiness,
    startup_state,
    too_large_answer,
)
from common.logging import configure_logging
from common.settings import Settings, SettingsError, get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# A function's own route: it gets the request and the runtime and gives an answer.
RouteHandler = Callable[[Request, Runtime], Awaitable[Answer]]
Target = Callable[[Request], Awaitable[Response]]
_SHARED_GET = ("/health/live", "/health/startup", "/health/ready", "/health", "/metrics")


def json_answer(status: int, body: Any) -> Answer:
    """`body` (dicts, lists, msgspec Structs) as a JSON answer."""
    return Answer(status, {"content-type": "application/json"}, msgspec.json.encode(body))


class FrameworkTarget:
    """Dispatches functions-framework requests to the shared answers and the function's routes."""

    def __init__(
        self,
        spec: FunctionSpec,
        settings: Settings | None,
        extra_routes: Mapping[tuple[str, str], RouteHandler],
    ) -> None:
        self.spec = spec
        self._settings = settings
        self.routes = [
            _Route.compile(method, template, handler) for (method, template), handler in extra_routes.items()
        ]
        self.runtime: Runtime | None = None
        self._lock = asyncio.Lock()

    async def ensure_runtime(self) -> Runtime:
        """The started runtime; the first request creates and starts it."""
        if self.runtime is not None:
            return self.runtime
        async with self._lock:
            if self.runtime is None:
                settings = self._settings or get_settings()
                configure_logging(settings)
                tracing.configure_tracing(settings, self.spec.name)
                runtime = Runtime.create(self.spec, settings)
                try:
                    await runtime.start()
                except Exception:  # reported by /health/startup; the process keeps answering probes
                    log.exception("function %s failed to start", self.spec.name)
                self.runtime = runtime
        return self.runtime

    def resolve(self, path: str) -> tuple[str | None, dict[str, _Route], dict[str, str]]:
        """The route template `path` matches (None if none), its routes by method, and path parameters."""
        if path in _SHARED_GET:
            return path, {}, {}
        if path == "/":
            return path, {}, {}
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is not None:
                by_method = {r.method: r for r in self.routes if r.template == route.template}
                return route.template, by_method, found.groupdict()
        return None, {}, {}

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        method, path = request.method.upper(), request.url.path
        runtime = await self.ensure_runtime()
        template, routes, params = self.resolve(path)
        allowed = (
            sorted(routes) if routes else ["GET"] if path in _SHARED_GET else ["POST"] if path == "/" else []
        )
        route = template if template is not None and method in allowed else "unmatched"
        with tracing.server_span(method, path, dict(request.headers)):
            try:
                if template is None:
                    answer = not_found_answer(path)
                elif method not in allowed:
                    answer = method_not_allowed_answer(path, allowed)
                elif routes:
                    request.scope["path_params"] = params
                    answer = await self.own_route(runtime, request, routes[method])
                else:
                    answer = await self.shared_route(runtime, request, path)
            except Exception:  # the same JSON 500 as the Litestar app, never functions-framework's text page
                log.exception("unhandled error on %s %s", method, path)
                answer = internal_error_answer()
        metrics.record_request(self.spec.name, method, route, answer.status, time.perf_counter() - started)
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    async def own_route(self, runtime: Runtime, request: Request, route: _Route) -> Answer:
        if not api_key_accepted(runtime.settings, request.headers):
            return error_answer(401, "unauthorized", API_KEY_REQUIRED)
        # The same body limit as the Litestar app's, for every route; Starlette keeps the body read
        # here, so the route's own `await request.body()` gets it without reading again.
        body = await read_body(request, runtime.settings.max_event_bytes)
        if body is None:
            return too_large_answer(runtime.settings.max_event_bytes)
        request._body = body
        return await route.handler(request, runtime)

    async def shared_route(self, runtime: Runtime, request: Request, path: str) -> Answer:
        if path == "/":
            body = await read_body(request, runtime.settings.max_event_bytes)
            if body is None:
                return too_large_answer(runtime.settings.max_event_bytes)
            return await handle_event_request(runtime, dict(request.headers), body)
        return await shared_answer(runtime, path)


@dataclass(frozen=True)
class _Route:
    """One of the function's own routes; `{name}` in the template matches one path segment."""

    method: str
    template: str
    pattern: re.Pattern[str]
    handler: RouteHandler

    @classmethod
    def compile(cls, method: str, template: str, handler: RouteHandler) -> _Route:
        pattern = "".join(
            f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") and part.endswith("}") else re.escape(part)
            for part in re.split(r"(\{[a-z_][a-z0-9_]*\})", template)
        )
        return cls(method.upper(), template, re.compile(pattern), handler)


async def shared_answer(runtime: Runtime, path: str) -> Answer:
    """The answer of one of the shared GET routes."""
    if path == "/health/live":
        return json_answer(*LIVE)
    if path == "/health/startup":
        return json_answer(*startup_state(runtime))
    if path == "/health/ready":
        return json_answer(*await readiness(runtime))
    if path == "/health":
        return json_answer(*await health_state(runtime))
    body, content_type = metrics.exposition()
    return Answer(200, {"content-type": content_type}, body)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it grows over `limit` bytes (the rest is not read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks = bytearray()
    async for chunk in request.stream():
        chunks.extend(chunk)
        if len(chunks) > limit:
            return None
    return bytes(chunks)


def load_or_exit(load: Callable[[], T]) -> T:
    """`load()`, or exit with status 2 and one line naming the variable when a setting is bad."""
    try:
        return load()
    except SettingsError as exc:
        print(f"victor: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def entry_settings() -> Settings:
    """Settings for a functions-framework entry module, read at import as `victor serve` reads them.

    A bad value exits 2 with one line; SIGTERM then ends the process with status 0 once
    uvicorn has finished in-flight requests.
    """
    settings = load_or_exit(get_settings)
    exit_cleanly_after_graceful_shutdown()
    return settings


def make_target(
    spec: FunctionSpec,
    settings: Settings | None = None,
    *,
    extra_routes: Mapping[tuple[str, str], RouteHandler] | None = None,
) -> Target:
    """An async functions-framework HTTP target serving `spec` like the Litestar app does.

    `extra_routes` maps (method, path template) to the function's own routes; a
    `{name}` segment matches one path segment and reaches the handler as
    `request.path_params["name"]`. They need VICTOR_API_KEY when one is set, as
    in the Litestar app. Settings default to the process's, read on the first request.
    """
    dispatcher = FrameworkTarget(spec, settings, extra_routes or {})

    async def target(request: Request) -> Response:
        return await dispatcher(request)

    target.dispatcher = dispatcher  # type: ignore[attr-defined]
    return target
