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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import Attributes

from common.cloudevents import CloudEvent
from common.settings import Settings

_PROPAGATOR = TraceContextTextMapPropagator()
_configured = False


class _DeferredOTLPExporter(SpanExporter):
    """The OTLP/HTTP exporter, imported on its first export (in the batch thread), not at start.

    Its imports (requests, protobuf) took about a tenth of a second of every cold start.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._exporter: SpanExporter | None = None

    def _real(self) -> SpanExporter:
        if self._exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self._exporter = OTLPSpanExporter(endpoint=self.endpoint)
        return self._exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._real().export(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis) if self._exporter is not None else True

    def shutdown(self) -> None:
        if self._exporter is not None:
            self._exporter.shutdown()


class _DropUntracedClientCalls(Sampler):
    """Every span is kept except a client call that begins a trace of its own.

    With the PostgreSQL, Redis and HTTP instrumentations on, background work outside any request
    (the broker's blocking stream reads every second, the trim loop, dependency checks) would each
    start a one-span trace; those are noise, not requests, so they are not recorded.
    """

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == trace.SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)

    def get_description(self) -> str:
        return "DropUntracedClientCalls"


def configure_tracing(settings: Settings, service: str) -> None:
    """Install the SDK tracer provider once per process.

    With OTEL_EXPORTER_OTLP_ENDPOINT set, spans are exported and PostgreSQL (asyncpg), Redis and
    outgoing HTTP (httpx) calls get spans of their own; their instrumentations are imported only then.
    """
    global _configured
    if _configured:
        return
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"victor-{service}"}), sampler=_DropUntracedClientCalls()
    )
    if settings.otel_exporter_otlp_endpoint:
        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(_DeferredOTLPExporter(endpoint)))
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(_PROPAGATOR)
    if settings.otel_exporter_otlp_endpoint:
        _instrument_clients()
    _configured = True


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
