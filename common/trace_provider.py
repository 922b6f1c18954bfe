"""The OpenTelemetry SDK tracer provider that `common.tracing` installs.

Kept apart from `common.tracing` so that a process exporting no spans imports the SDK
(about 20 ms of every cold start, psutil included) only when it makes its first span.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.util.types import Attributes


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


def sdk_provider(service: str, endpoint: str | None) -> TracerProvider:
    """The SDK provider for `victor-{service}`; with an OTLP/HTTP `endpoint`, it exports there in batches."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"victor-{service}"}), sampler=_DropUntracedClientCalls()
    )
    if endpoint:
        provider.add_span_processor(
            BatchSpanProcessor(_DeferredOTLPExporter(endpoint.rstrip("/") + "/v1/traces"))
        )
    return provider
