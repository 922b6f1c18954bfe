"""The functions-framework HTTP target, generated from a `FunctionSpec`.

`functions-framework --asgi --target handle --source functions/<name>/main.py`
serves every path through one async function of a Starlette request; `target`
makes it from the function's declaration: the shared routes (probes, /health,
/metrics, `POST /` for CloudEvents) and the function's own route table, served
through the same framework-free code as the Litestar app, so both modes answer
alike. Nothing here imports Litestar. The functions-framework `cloud_event`
signature is not used on purpose: it answers every event with a plain "OK"
body, which a Knative Trigger turns into a 502.

There is no lifespan under functions-framework, so the runtime is created and
started on the first request (once, under a lock).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from common import metrics, tracing
from common.answers import (
    Answer,
    Refusal,
    StreamedAnswer,
    json_answer,
    method_not_allowed_answer,
    not_found_answer,
    refusal_answer,
    too_large,
)
from common.event_pipeline import handle_event_request
from common.function import FunctionSpec
from common.http_limits import limit_functions_framework_workers
from common.logging import configure_logging
from common.probes import LIVE, health_state, readiness, startup_state
from common.routing import RouteTable, serve_route, unexpected_error
from common.runtime import Runtime, exit_cleanly_after_graceful_shutdown
from common.settings import EnvReader, HttpLimits, Settings, SettingsError, get_settings, http_limit_settings

log = logging.getLogger(__name__)
T = TypeVar("T")
Target = Callable[[Request], Awaitable[Response]]
_SHARED_GET = ("/health/live", "/health/startup", "/health/ready", "/health", "/metrics")


class FrameworkTarget:
    """Dispatches functions-framework requests to the shared answers and the function's route table."""

    def __init__(self, spec: FunctionSpec, settings: Settings | None) -> None:
        self.spec = spec
        self._settings = settings
        self.table = RouteTable(spec.routes)
        self.runtime: Runtime[Any] | None = None
        self._lock = asyncio.Lock()

    async def ensure_runtime(self) -> Runtime[Any]:
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

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        method, path = request.method.upper(), request.url.path
        runtime = await self.ensure_runtime()
        template: str | None
        if path in _SHARED_GET:
            template, allowed = path, ["GET"]
        elif path == "/":
            template, allowed = path, ["POST"]
        else:
            found, routes, params = self.table.match(path)
            template, allowed = found, sorted(routes)
        route = template if template is not None and method in allowed else "unmatched"
        limit = runtime.settings.max_event_bytes

        async def read() -> bytes:
            body = await read_body(request, limit)
            if body is None:
                raise too_large(limit)
            return body

        answer: Answer | StreamedAnswer
        with tracing.server_span(method, path, dict(request.headers)) as span:
            try:
                if template is None:
                    answer = not_found_answer(path)
                elif method not in allowed:
                    answer = method_not_allowed_answer(path, allowed)
                elif path == "/":
                    try:
                        answer = await handle_event_request(runtime, dict(request.headers), await read())
                    except Refusal as exc:
                        answer = refusal_answer(exc)
                elif path in _SHARED_GET:
                    answer = await shared_answer(runtime, path)
                else:
                    answer = await serve_route(runtime, routes[method], params, request.headers, read)
            except Exception as exc:  # the same JSON answer as the Litestar app, never a text page
                answer = refusal_answer(unexpected_error(exc, method, path))
            tracing.record_response(span, method, None if route == "unmatched" else route, answer.status)
        metrics.record_request(self.spec.name, method, route, answer.status, time.perf_counter() - started)
        if isinstance(answer, StreamedAnswer):
            return StreamingResponse(answer.chunks, status_code=answer.status, headers=answer.headers)
        return Response(answer.body, status_code=answer.status, headers=answer.headers)


async def shared_answer(runtime: Runtime[Any], path: str) -> Answer:
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


def _environment_http_limits() -> HttpLimits:
    try:
        return http_limit_settings(EnvReader(os.environ))
    except SettingsError:
        return HttpLimits()  # the first request reports the bad variable, as for every other setting


def target(spec: FunctionSpec, settings: Settings | None = None) -> Target:
    """The async functions-framework HTTP target serving `spec` as `victor serve` does.

    Settings default to the process's, read on the first request. The target's
    `dispatcher` attribute holds the `FrameworkTarget` (tests reach the runtime through it).
    """
    dispatcher = FrameworkTarget(spec, settings)
    limit_functions_framework_workers(settings.http_limits if settings else _environment_http_limits())

    async def handle(request: Request) -> Response:
        return await dispatcher(request)

    handle.dispatcher = dispatcher  # type: ignore[attr-defined]
    return handle
