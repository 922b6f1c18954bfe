"""W3C trace context: from the request (CloudEvent extension or HTTP header) to the reply and onward calls."""

from __future__ import annotations

import io
import json
import logging

import httpx

from common.cloudevents import from_http
from common.logging import JsonFormatter
from functions.health.app import create
from tests.support.foundation import FakeFunction, MakeSettings, unique
from tests.support.servers import running

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
PING = {
    "ce-specversion": "1.0",
    "ce-source": "/test/tracing",
    "ce-type": "dev.knative.sources.ping",
}


def trace_id(traceparent: str) -> str:
    version, trace, span, flags = traceparent.split("-")
    assert (version, len(span), int(flags, 16) & 1) == ("00", 16, 1)  # sampled
    return trace


async def test_a_ping_with_a_traceparent_extension_gets_a_reply_in_the_same_trace(
    make_settings: MakeSettings,
) -> None:
    peer = FakeFunction()
    async with running(peer.app()) as peer_url:
        settings = make_settings(VICTOR_TOOLS_URL=peer_url)
        async with running(create(settings)) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.post(
                "/",
                headers={
                    **PING,
                    "ce-id": unique("trace-ext"),
                    "ce-traceparent": TRACEPARENT,
                    "ce-tracestate": "k=v",
                },
            )
    assert response.status_code == 200
    reply = from_http(response.headers, response.content, max_bytes=1 << 20)
    assert trace_id(reply.extensions["traceparent"]) == TRACE_ID
    # A new span of this function, not the caller's span echoed back.
    assert reply.extensions["traceparent"] != TRACEPARENT
    assert reply.extensions["tracestate"] == "k=v"
    # The health check it made to another function while handling the ping carried the trace too.
    assert [trace_id(seen["traceparent"]) for seen in peer.seen] == [TRACE_ID]


async def test_a_ping_with_only_an_http_traceparent_header_gets_a_reply_in_the_same_trace(
    make_settings: MakeSettings,
) -> None:
    async with running(create(make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/", headers={**PING, "ce-id": unique("trace-header"), "traceparent": TRACEPARENT}
        )
    assert response.status_code == 200
    reply = from_http(response.headers, response.content, max_bytes=1 << 20)
    assert trace_id(reply.extensions["traceparent"]) == TRACE_ID


async def test_a_ping_without_trace_context_starts_a_new_trace(make_settings: MakeSettings) -> None:
    async with running(create(make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/", headers={**PING, "ce-id": unique("trace-none")})
        second = await client.post("/", headers={**PING, "ce-id": unique("trace-none")})
    traces = [
        trace_id(from_http(r.headers, r.content, max_bytes=1 << 20).extensions["traceparent"])
        for r in (first, second)
    ]
    assert traces[0] != traces[1]
    assert TRACE_ID not in traces


async def test_v1_status_carries_the_callers_trace_to_other_functions(make_settings: MakeSettings) -> None:
    tools, chat = FakeFunction(), FakeFunction()
    async with running(tools.app()) as tools_url, running(chat.app()) as chat_url:
        settings = make_settings(VICTOR_TOOLS_URL=tools_url, VICTOR_CHAT_URL=chat_url)
        async with running(create(settings)) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/v1/status", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    assert [trace_id(seen["traceparent"]) for seen in tools.seen + chat.seen] == [TRACE_ID, TRACE_ID]


async def test_log_lines_written_while_handling_an_event_carry_its_id_and_trace(
    make_settings: MakeSettings,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    function_log = logging.getLogger("common.event_pipeline")
    function_log.addHandler(handler)
    previous = function_log.level
    function_log.setLevel(logging.INFO)
    event_id = unique("logged")
    try:
        async with running(create(make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
            headers = {**PING, "ce-id": event_id, "ce-traceparent": TRACEPARENT}
            for _ in range(2):  # the redelivery is logged as a duplicate
                assert (await client.post("/", headers=headers)).status_code == 200
    finally:
        function_log.removeHandler(handler)
        function_log.setLevel(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    duplicate = [line for line in lines if "already handled" in line["message"]]
    assert len(duplicate) == 1
    assert duplicate[0]["event_id"] == event_id
    assert duplicate[0]["trace_id"] == TRACE_ID
    assert len(duplicate[0]["span_id"]) == 16
