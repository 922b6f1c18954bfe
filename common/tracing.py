"""OpenTelemetry tracing with W3C trace context.

Spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
Context comes in from HTTP headers or a CloudEvent's `traceparent`/`tracestate`
extensions and goes out on every request and event this process sends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

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


def configure_tracing(settings: Settings, service: str) -> None:
    """Install the SDK tracer provider once per process."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"victor-{service}"}))
    if settings.otel_exporter_otlp_endpoint:
        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(_DeferredOTLPExporter(endpoint)))
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(_PROPAGATOR)
    _configured = True


@cache
def tracer(name: str) -> trace.Tracer:
    """The tracer for `name`, made once: making one per request cost as much as the span itself."""
    return trace.get_tracer(name)


def context_from_headers(headers: Mapping[str, str]) -> context.Context:
    """The remote trace context carried by W3C `traceparent`/`tracestate` headers."""
    lowered = {key.lower(): value for key, value in headers.items()}
    return _PROPAGATOR.extract(lowered)


# Probes and scrapes arrive every few seconds from kubelet, Knative and Prometheus; a span for each
# would be noise in the traces and its export costs more than the answer, so they are traced only
# when the caller is tracing (sends a traceparent).
UNTRACED_PATHS = frozenset({"/health/live", "/health/ready", "/health/startup", "/metrics"})


@contextmanager
def server_span(method: str, path: str, headers: Mapping[str, str]) -> Iterator[trace.Span | None]:
    """A server span for one incoming HTTP request, continuing the caller's W3C trace context.

    Probes and /metrics get none (None is yielded) unless the caller sends a `traceparent`.
    """
    if path in UNTRACED_PATHS and not any(key.lower() == "traceparent" for key in headers):
        yield None
        return
    with tracer(__name__).start_as_current_span(
        f"{method} {path}", context=context_from_headers(headers), kind=trace.SpanKind.SERVER
    ) as span:
        yield span


def context_from_event(event: CloudEvent, fallback: Mapping[str, str] | None = None) -> context.Context:
    """The trace context of an event's distributed-tracing extension, else of the HTTP headers."""
    if "traceparent" in event.extensions:
        return _PROPAGATOR.extract(
            {key: event.extensions[key] for key in ("traceparent", "tracestate") if key in event.extensions}
        )
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
