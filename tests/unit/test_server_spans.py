"""Which incoming requests get a server span: the one rule both serving modes use."""

# ruff: noqa: F811 - the recorded_spans fixture is imported from tests.support.otlp

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from common import tracing
from tests.support.otlp import recorded_spans  # noqa: F401 - the fixture

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_probes_and_metrics_get_no_span_unless_the_caller_is_tracing() -> None:
    for path in ("/health/live", "/health/ready", "/health/startup", "/metrics"):
        with tracing.server_span("GET", path, {"accept": "*/*"}) as span:
            assert span is None
        with tracing.server_span("GET", path, {"traceparent": TRACEPARENT}) as span:
            assert span is not None
            assert format(span.get_span_context().trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"


def test_every_other_request_gets_a_span_continuing_the_callers_trace() -> None:
    with tracing.server_span("GET", "/v1/status", {}) as span:
        assert span is not None
    with tracing.server_span("POST", "/", {"Traceparent": TRACEPARENT}) as span:
        assert span is not None
        assert format(span.get_span_context().trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"


def test_a_server_span_is_named_by_its_route_template_and_a_5xx_is_an_error(
    recorded_spans: InMemorySpanExporter,
) -> None:
    with tracing.server_span("GET", "/v1/conversations/c-1", {}) as span:
        tracing.record_response(span, "GET", "/v1/conversations/{conversation_id:str}", 502)
    with tracing.server_span("GET", "/nowhere", {}) as span:
        tracing.record_response(span, "GET", None, 404)
    named, unmatched = recorded_spans.get_finished_spans()
    assert named.name == "GET /v1/conversations/{conversation_id}"
    assert dict(named.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/v1/conversations/c-1",
        "http.route": "/v1/conversations/{conversation_id}",
        "http.response.status_code": 502,
        "error.type": "502",
    }
    assert named.status.status_code == StatusCode.ERROR
    assert unmatched.name == "GET"
    assert (unmatched.attributes or {})["http.response.status_code"] == 404
    assert unmatched.status.status_code == StatusCode.UNSET


def test_a_binary_mode_event_without_a_traceparent_header_is_continued_from_its_extension() -> None:
    headers = {"ce-traceparent": TRACEPARENT, "ce-tracestate": "k=v"}
    with tracing.server_span("POST", "/", headers) as span:
        assert span is not None
        context = span.get_span_context()
        assert format(context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
        assert context.trace_state.get("k") == "v"
