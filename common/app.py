"""The Litestar app (`victor serve NAME`), generated from a `FunctionSpec`.

It serves the routes every function has (health probes, /health, /metrics,
`POST /` for CloudEvents, the OpenAPI schema) and one Litestar route per entry
of the function's route table, each answered by `common.routing.serve_route`
exactly as the functions-framework target answers it; the OpenAPI schema gets
each route's body and answer Structs from the same table. Litestar adds request
metrics, its own routing errors in the shared JSON error body, and the
function's start/stop as the app's lifespan.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.enums import HttpMethod, ScopeType
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from litestar.handlers import HTTPRouteHandler, asgi
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation, RequestBody
from litestar.plugins import PluginProtocol
from litestar.plugins.core import MsgspecDIPlugin
from litestar.response import Stream
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from common import metrics, tracing
from common.answers import (
    JSON,
    Answer,
    Refusal,
    StreamedAnswer,
    method_not_allowed_answer,
    not_found_answer,
    refusal_answer,
    status_code_name,
    too_large,
)
from common.cloudevents import EVENT_BODY
from common.event_pipeline import handle_event_request
from common.function import FunctionSpec, Mount, Route
from common.probes import LIVE, HealthReport, health_state, readiness, startup_state
from common.routing import admit, serve_route, unexpected_error
from common.runtime import VERSION, Runtime
from common.settings import Settings, get_settings

log = logging.getLogger(__name__)
_TRACE_HEADERS = frozenset(name.encode() for name in tracing.TRACE_HEADERS)
_PARAMETER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def answer_response(answer: Answer | StreamedAnswer) -> Response[Any]:
    if isinstance(answer, StreamedAnswer):
        return Stream(answer.chunks, status_code=answer.status, headers=answer.headers)
    return Response(
        content=answer.body,
        status_code=answer.status,
        headers=answer.headers,
        media_type=answer.headers.get("content-type", MediaType.TEXT),
    )


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own refusals (routing, body size) in the shared error body."""
    if exc.status_code == 413:  # Litestar's own answer names neither the problem's code nor the limit
        return answer_response(refusal_answer(too_large(request.app.state.runtime.settings.max_event_bytes)))
    # Litestar's routing errors say only "Not Found"; answer as the functions-framework target does.
    if isinstance(exc, NotFoundException):
        return answer_response(not_found_answer(request.url.path))
    if isinstance(exc, MethodNotAllowedException):
        offered = (exc.headers or {}).get("allow", "").split(",")
        allowed = [method.strip() for method in offered if method.strip() not in ("", "OPTIONS")]
        return answer_response(method_not_allowed_answer(request.url.path, allowed))
    refusal = Refusal(exc.status_code, exc.detail, status_code_name(exc.status_code), headers=exc.headers)
    return answer_response(refusal_answer(refusal))


def _unhandled(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return answer_response(refusal_answer(unexpected_error(exc, request.method, request.url.path)))


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
        with tracing.server_span(method, scope["path"], headers) as span:
            try:
                await app(scope, receive, send_wrapper)
            finally:
                template = scope.get("path_template")  # type: ignore[typeddict-item]
                tracing.record_response(span, method, template, status)
                function = scope["app"].state.runtime.spec.name
                route = template or "unmatched"
                metrics.record_request(function, method, route, status, time.perf_counter() - started)

    return middleware


def _runtime(request: Request[Any, Any, Any]) -> Runtime[Any]:
    runtime: Runtime[Any] = request.app.state.runtime
    return runtime


@get("/health/live", sync_to_thread=False, include_in_schema=False)
def live() -> dict[str, str]:
    """Liveness: the process answers."""
    return LIVE[1]


@get("/health/startup", include_in_schema=False)
async def startup(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """Startup: 200 once the function's start (model loading, for example) has finished."""
    status, body = startup_state(_runtime(request))
    return Response(body, status_code=status)


@get("/health/ready", include_in_schema=False)
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """Readiness: 200 when started and every required dependency answers."""
    status, body = await readiness(_runtime(request))
    return Response(body, status_code=status)


@get("/health")
async def health(request: Request[Any, Any, Any]) -> Response[HealthReport]:
    """Each dependency's state and latency; 503 when the function is not ready."""
    status, report = await health_state(_runtime(request))
    return Response(report, status_code=status)


@get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response[bytes]:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def inline_schema(model: Any) -> dict[str, Any]:
    """`model`'s JSON Schema with every definition written in place (route Structs are not recursive)."""
    (schema,), definitions = msgspec.json.schema_components([model], ref_template="{name}")

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def request_body(media: Mapping[str, Any]) -> RequestBody:
    """A required request body of these media types, each described by its Struct (or type)."""
    content = {name: OpenAPIMediaType(schema=inline_schema(model)) for name, model in media.items()}  # type: ignore[arg-type]
    return RequestBody(content=content, required=True)


def _operation_class(route: Route) -> type[Operation]:
    """An OpenAPI operation that describes the route's body and answer from the route table."""
    body = None
    if route.body is bytes:
        body = request_body(route.raw_body)
    elif route.body is not None:
        body = request_body({"application/json": route.body})
    answer = inline_schema(route.returns) if route.returns is not None else None
    accepted = inline_schema(route.accepted) if route.accepted is not None else None
    return operation_class(route.handler.__name__, body, answer, route.media_type, accepted)


def operation_class(
    name: str,
    body: RequestBody | None,
    answer: dict[str, Any] | None = None,
    media_type: str = JSON,
    accepted: dict[str, Any] | None = None,
) -> type[Operation]:
    """An OpenAPI operation with this request body, 200 answer and 202 (JSON) answer (Litestar sees
    none of them in a handler that reads the raw request)."""

    def __init__(self: Operation, *args: Any, **kwargs: Any) -> None:
        Operation.__init__(self, *args, **kwargs)
        self.request_body = body
        if answer is not None and self.responses is not None:
            self.responses["200"] = OpenAPIResponse(
                description="OK",
                content={media_type: OpenAPIMediaType(schema=answer)},  # type: ignore[arg-type]
            )
        if accepted is not None and self.responses is not None:
            self.responses["202"] = OpenAPIResponse(
                description="Accepted",
                content={JSON: OpenAPIMediaType(schema=accepted)},  # type: ignore[arg-type]
            )

    return type(f"{name}_operation", (Operation,), {"__init__": __init__})


@post(
    "/",
    status_code=202,
    summary="Deliver a CloudEvent (binary or structured mode)",
    operation_class=operation_class("receive_event", request_body(EVENT_BODY)),
)
async def receive_event(request: Request[Any, Any, Any]) -> Response[Any]:
    """Answered 202 with an empty body, or 200 with exactly one CloudEvent (the reply)."""
    body = await request.body()
    return answer_response(await handle_event_request(_runtime(request), dict(request.headers), body))


def _litestar_route(route: Route) -> HTTPRouteHandler:
    """The Litestar handler of one route of the table, answered by `serve_route`."""

    async def read_body(request: Request[Any, Any, Any]) -> bytes:
        try:
            return await request.body()
        except HTTPException as exc:
            if exc.status_code == 413:
                raise too_large(_runtime(request).settings.max_event_bytes) from None
            raise

    async def handler(request: Request[Any, Any, Any]) -> Response[Any]:
        answer = await serve_route(
            _runtime(request), route, request.path_params, request.headers, lambda: read_body(request)
        )
        return answer_response(answer)

    handler.__name__ = handler.__qualname__ = route.handler.__name__
    handler.__doc__ = route.handler.__doc__
    path = _PARAMETER.sub(r"{\1:str}", route.path)
    return HTTPRouteHandler(
        path=path,
        http_method=HttpMethod(route.method),
        status_code=200,
        summary=route.summary,
        description=route.description or route.handler.__doc__,
        operation_class=_operation_class(route),
        signature_namespace={"Request": Request, "Response": Response, "Any": Any},
    )(handler)


def _litestar_mount(mount: Mount) -> Any:
    """The mount as a Litestar ASGI handler, behind the same API key and rate limit as the route table."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime[Any] = scope["app"].state.runtime
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        try:
            await admit(runtime, headers)
        except Refusal as refusal:
            answer = refusal_answer(refusal)
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()],
            }
            await send(start)
            body: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": answer.body,
                "more_body": False,
            }
            await send(body)
            return
        await mount.app(runtime, scope, receive, send)

    return asgi(mount.path, is_mount=True, copy_scope=True)(app)


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

    own = [_litestar_route(route) for route in spec.routes] + [_litestar_mount(m) for m in spec.mounts]
    app = _MsgspecLitestar(
        route_handlers=[live, startup, ready, health, prometheus_metrics, receive_event, *own],
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
