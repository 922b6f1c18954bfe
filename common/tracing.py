"""OpenTelemetry tracing with W3C trace context.

Spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set; then
asyncpg, Redis and httpx calls get spans too. Context comes in from HTTP headers or a
CloudEvent's `traceparent`/`tracestate` extensions and goes out on every request and
event this process sends. Server spans are named by the route template they matched
(`record_response`); an event's span goes under the server span that delivered it
(`context_from_event`), so one agent turn through the broker is one trace.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode

from common.cloudevents import CloudEvent
from common.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

_PROPAGATOR = TraceContextTextMapPropagator()
_configured = False


class _DeferredTracerProvider(trace.TracerProvider):
    """Builds the SDK provider (common/trace_provider.py) when the first tracer is asked for.

    Installed when no spans are exported: probes and /metrics make no span unless the caller
    traces, so a start that nobody traces never imports the SDK.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._provider: TracerProvider | None = None
        self._lock = threading.Lock()

    def sdk(self) -> TracerProvider:
        """The SDK provider, built on the first call."""
        with self._lock:
            if self._provider is None:
                from common.trace_provider import sdk_provider

                self._provider = sdk_provider(self.service, None)
        return self._provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.sdk().get_tracer(*args, **kwargs)


def configure_tracing(settings: Settings, service: str) -> None:
    """Install the SDK tracer provider once per process.

    With OTEL_EXPORTER_OTLP_ENDPOINT set, spans are exported and PostgreSQL (asyncpg), Redis and
    outgoing HTTP (httpx) calls get spans of their own; their instrumentations are imported only then.
    Without it, spans are made and carried on alike, but the SDK is imported with the first one.
    """
    global _configured
    if _configured:
        return
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint:
        from common.trace_provider import sdk_provider

        trace.set_tracer_provider(sdk_provider(service, endpoint))
    else:
        trace.set_tracer_provider(_DeferredTracerProvider(service))
    propagate.set_global_textmap(_PROPAGATOR)
    if endpoint:
        _instrument_clients()
    _configured = True


def installed_provider() -> TracerProvider:
    """The SDK tracer provider `configure_tracing` installed (built now if it was still deferred)."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if isinstance(provider, _DeferredTracerProvider):
        provider = provider.sdk()
    if not isinstance(provider, TracerProvider):
        raise RuntimeError("configure_tracing has not installed the tracer provider")
    return provider


def _instrument_clients() -> None:
    """Spans for every asyncpg query, Redis command and httpx request (which also carry the trace on)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # Statements only: asyncpg's parameters (user text) are not captured by default.
    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument()  # commands with their arguments replaced by "?"
    HTTPXClientInstrumentor().instrument()


@cache
def tracer(name: str) -> trace.Tracer:
    """The tracer for `name`, made once: making one per request cost as much as the span itself."""
    return trace.get_tracer(name)


def context_from_headers(headers: Mapping[str, str]) -> context.Context:
    """The remote trace context carried by W3C `traceparent`/`tracestate` headers.

    Without a `traceparent` header, the binary-mode CloudEvent extension headers
    (`ce-traceparent`/`ce-tracestate`) are read: a sender that traces only its events is continued too.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    if "traceparent" not in lowered and "ce-traceparent" in lowered:
        lowered = {key[3:]: lowered[key] for key in ("ce-traceparent", "ce-tracestate") if key in lowered}
    return _PROPAGATOR.extract(lowered)


# Probes and scrapes arrive every few seconds from kubelet, Knative and Prometheus; a span for each
# would be noise in the traces and its export costs more than the answer, so they are traced only
# when the caller is tracing (sends a traceparent).
UNTRACED_PATHS = frozenset({"/health/live", "/health/ready", "/health/startup", "/metrics"})
# The headers a server span reads (ASGI header names are lowercase).
TRACE_HEADERS = frozenset({"traceparent", "tracestate", "ce-traceparent", "ce-tracestate"})
_TYPED_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]*\}")


@contextmanager
def server_span(method: str, path: str, headers: Mapping[str, str]) -> Iterator[trace.Span | None]:
    """A server span for one incoming HTTP request, continuing the caller's W3C trace context.

    Probes and /metrics get none (None is yielded) unless the caller sends a `traceparent`.
    The span is named `METHOD` until `record_response` names it by the route the request matched.
    """
    if path in UNTRACED_PATHS and not any(key.lower() == "traceparent" for key in headers):
        yield None
        return
    with tracer(__name__).start_as_current_span(
        method,
        context=context_from_headers(headers),
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": path},
    ) as span:
        yield span


def record_response(span: trace.Span | None, method: str, route: str | None, status: int) -> None:
    """Name a server span by its route template (`GET /v1/conversations/{id}`; `METHOD` alone when no
    route matched) and record the answer's status code; a 5xx marks the span as an error."""
    if span is None:
        return
    if route:
        template = _TYPED_PARAMETER.sub(r"{\1}", route)
        span.update_name(f"{method} {template}")
        span.set_attribute("http.route", template)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


def _extension_context(event: CloudEvent) -> context.Context | None:
    if "traceparent" not in event.extensions:
        return None
    return _PROPAGATOR.extract(
        {key: event.extensions[key] for key in ("traceparent", "tracestate") if key in event.extensions}
    )


def context_from_event(event: CloudEvent, fallback: Mapping[str, str] | None = None) -> context.Context:
    """The parent for the span that handles `event`.

    The current span (the server span of the request that delivered it, or the caller running it
    in-process) when it belongs to the event's trace or the event carries none; else the event's
    distributed-tracing extension (`traceparent`/`tracestate`); else the HTTP headers in `fallback`.
    """
    current = trace.get_current_span().get_span_context()
    carried = _extension_context(event)
    if current.is_valid and (
        carried is None or trace.get_current_span(carried).get_span_context().trace_id == current.trace_id
    ):
        return context.get_current()
    if carried is not None:
        return carried
    return context_from_headers(fallback or {})


def current_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) for the current span, to put on an outgoing request."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def with_trace(event: CloudEvent) -> CloudEvent:
    """A copy of `event` carrying the current trace context as extensions."""
    carrier = current_headers()
    if not carrier:
        return event
    return event.with_extensions(traceparent=carrier.get("traceparent"), tracestate=carrier.get("tracestate"))
