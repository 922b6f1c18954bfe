"""The Litestar app factory every function uses.

It adds the routes every function has (health probes, /health, /metrics,
`POST /` for CloudEvents, the OpenAPI schema), request metrics, JSON error
bodies for every 4xx and 5xx, an optional API key on the public `/v1` routes,
and the function's start/stop as the app's lifespan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.config import OpenAPIConfig
from litestar.plugins import PluginProtocol
from litestar.plugins.core import MsgspecDIPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from common import metrics, tracing
from common.function import (
    API_KEY_REQUIRED,
    LIVE,
    VERSION,
    Answer,
    FunctionSpec,
    HealthReport,
    Runtime,
    api_key_accepted,
    handle_event_request,
    health_state,
    internal_error_answer,
    method_not_allowed_answer,
    not_found_answer,
    readiness,
    startup_state,
    too_large_answer,
)
from common.settings import Settings, get_settings

log = logging.getLogger(__name__)
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})  # ASGI header names are lowercase


def answer_response(answer: Answer) -> Response[bytes]:
    return Response(
        content=answer.body,
        status_code=answer.status,
        headers=answer.headers,
        media_type=answer.headers.get("content-type", MediaType.TEXT),
    )


def _error_body(status: int, code: str, detail: str, extra: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": status, "error": code, "detail": detail}
    if extra:
        body["extra"] = extra
    return body


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 413:  # Litestar's own answer names neither the problem's code nor the limit
        return answer_response(too_large_answer(request.app.state.runtime.settings.max_event_bytes))
    # Litestar's routing errors say only "Not Found"; answer as the functions-framework target does.
    if isinstance(exc, NotFoundException) and exc.detail == "Not Found":
        return answer_response(not_found_answer(request.url.path))
    if isinstance(exc, MethodNotAllowedException):
        offered = (exc.headers or {}).get("allow", "").split(",")
        allowed = [method.strip() for method in offered if method.strip() not in ("", "OPTIONS")]
        return answer_response(method_not_allowed_answer(request.url.path, allowed))
    code = "invalid_request" if isinstance(exc, ValidationException) else exc.__class__.__name__
    code = {
        "NotFoundException": "not_found",
        "MethodNotAllowedException": "method_not_allowed",
        "NotAuthorizedException": "unauthorized",
        "PermissionDeniedException": "forbidden",
        "TooManyRequestsException": "too_many_requests",
        "ClientException": "bad_request",
        "InternalServerException": "internal_error",
        "ServiceUnavailableException": "unavailable",
    }.get(code, code)
    if code == "HTTPException":  # raised with only a status: name the status ("conflict", "bad_request")
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    headers = dict(exc.headers or {})
    return Response(
        _error_body(exc.status_code, code, exc.detail, exc.extra),
        status_code=exc.status_code,
        headers=headers,
        media_type=MediaType.JSON,
    )


def _unhandled(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return answer_response(internal_error_answer())


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for the public /v1 routes: needs VICTOR_API_KEY when one is set.

    Async so that Litestar does not hand every guarded request to a worker thread.
    """
    settings: Settings = connection.app.state.runtime.settings
    if not api_key_accepted(settings, connection.headers):
        raise NotAuthorizedException(API_KEY_REQUIRED)


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Counts and times every HTTP request by its route template, inside a server span."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        method = str(scope.get("method", ""))

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # Only the W3C trace headers matter to the span; decoding every header cost more than the route.
        headers = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope["headers"]
            if key in _TRACE_HEADERS
        }
        try:
            with tracing.server_span(method, scope["path"], headers):
                await app(scope, receive, send_wrapper)
        finally:
            route = scope.get("path_template") or "unmatched"  # type: ignore[typeddict-item]
            function = scope["app"].state.runtime.spec.name
            metrics.record_request(function, method, route, status, time.perf_counter() - started)

    return middleware


def runtime_dependency(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@get("/health/live", sync_to_thread=False, include_in_schema=False)
def live() -> dict[str, str]:
    """Liveness: the process answers."""
    return LIVE[1]


@get("/health/startup", include_in_schema=False)
async def startup(runtime: Runtime) -> Response[dict[str, str]]:
    """Startup: 200 once the function's start (model loading, for example) has finished."""
    status, body = startup_state(runtime)
    return Response(body, status_code=status)


@get("/health/ready", include_in_schema=False)
async def ready(runtime: Runtime) -> Response[dict[str, str]]:
    """Readiness: 200 when started and every required dependency answers."""
    status, body = await readiness(runtime)
    return Response(body, status_code=status)


@get("/health")
async def health(runtime: Runtime) -> Response[HealthReport]:
    """Each dependency's state and latency; 503 when the function is not ready."""
    status, report = await health_state(runtime)
    return Response(report, status_code=status)


@get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response[bytes]:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


@post("/", status_code=202, summary="Deliver a CloudEvent (binary or structured mode)")
async def receive_event(request: Request[Any, Any, Any], runtime: Runtime) -> Response[bytes]:
    """Answered 202 with an empty body, or 200 with exactly one CloudEvent (the reply)."""
    body = await request.body()
    return answer_response(await handle_event_request(runtime, dict(request.headers), body))


class _MsgspecLitestar(Litestar):
    """Litestar with only its msgspec plugin: every payload here is a msgspec Struct.

    Litestar otherwise imports its pydantic and attrs plugins whenever those packages are
    installed (the LLM SDKs bring pydantic), which cost about 0.08 s of every cold start.
    """

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        plugins.append(MsgspecDIPlugin())
        return plugins


def create_app(spec: FunctionSpec, settings: Settings | None = None) -> Litestar:
    """A Litestar app serving `spec`, with the shared routes, metrics, errors and lifespan."""
    settings = settings or get_settings()
    runtime = Runtime.create(spec, settings)
    tracing.configure_tracing(settings, spec.name)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    public = Router(path="/", route_handlers=list(spec.routes), guards=[require_api_key])
    app = _MsgspecLitestar(
        route_handlers=[live, startup, ready, health, prometheus_metrics, receive_event, public],
        dependencies={"runtime": Provide(runtime_dependency, sync_to_thread=False)},
        lifespan=[lifespan],
        exception_handlers={HTTPException: _http_exception, Exception: _unhandled},
        openapi_config=OpenAPIConfig(title=f"Victor {spec.name} function", version=VERSION, path="/schema"),
        request_max_body_size=settings.max_event_bytes,
        type_encoders={msgspec.Struct: msgspec.to_builtins},
        debug=False,
        # Litestar's default logging config replaces the root handlers; common.logging owns them.
        logging_config=None,
    )
    app.state.runtime = runtime
    # Around the router, not as route middleware, so 404s and 405s are counted and traced too.
    app.asgi_handler = metrics_middleware(app.asgi_handler)
    return app
