"""Which incoming requests get a server span: the one rule both serving modes use."""

from __future__ import annotations

from common import tracing

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
