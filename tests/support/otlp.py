"""A local OTLP/HTTP trace receiver: what the functions' exporters send, decoded with opentelemetry-proto.

`OTLPReceiver` is an ASGI app (serve it with `tests.support.servers.running`) answering
`POST /v1/traces` as a collector does; every span of every export request is kept as a
`ReceivedSpan` with the `service.name` of the process that sent it. The `recorded_spans`
fixture keeps the spans of the test process itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common import tracing
from common.settings import load_settings
from tests.support.recorder import read_request

KINDS = {
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict[str, Any]
    error: bool  # the span's status is ERROR

    def __str__(self) -> str:
        return f"{self.service}: {self.name}"


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, which) if which else None


class OTLPReceiver:
    """Keeps every span exported to it; `wait_for` waits (bounded) until the spans a test needs arrived."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._arrived = asyncio.Condition()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = await read_request(scope, receive, send)
        if request is None:
            return
        _, body = request
        export = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            name=span.name,
                            kind=KINDS.get(span.kind, "unspecified"),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            error=span.status.code == Status.STATUS_CODE_ERROR,
                        )
                    )
        async with self._arrived:
            self.spans.extend(received)
            self._arrived.notify_all()
        answer = ExportTraceServiceResponse().SerializeToString()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-protobuf")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 60.0) -> None:
        """Return once `done(spans)` holds; fail the test, listing what came, after `timeout` seconds."""
        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(lambda: done(self.spans)), timeout)
            except TimeoutError:
                got = "\n".join(sorted({str(span) for span in self.spans}))
                raise AssertionError(f"the expected spans did not all arrive; got:\n{got}") from None


@pytest.fixture
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Every span this test process ends while the test runs (the process's tracer provider, made as
    the apps make it, with an in-memory exporter added)."""
    tracing.configure_tracing(load_settings({}), "tests")
    provider = tracing.installed_provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        exporter.shutdown()  # the processor stays on the provider; it now drops what it is given
