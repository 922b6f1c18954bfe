"""The local broker held to Knative's data plane, one rule per test, black-box over HTTP with real Redis.

Each docstring names where the rule comes from: Knative's broker ingress
(knative/eventing pkg/broker/ingress/ingress_handler.go), its filter
(pkg/broker/filter/filter_handler.go), the dispatcher and retries
(pkg/kncloudevents/event_dispatcher.go, retries.go), the TTL defaulter
(pkg/broker/ttl.go), the data-plane contract (knative/specs
specs/eventing/data-plane.md), Knative's delivery documentation, and the
CloudEvents HTTP binding and JSON format.
"""

from __future__ import annotations

import asyncio
import base64
import itertools

import httpx
import msgspec
import pytest

from common.cloudevents import to_binary
from eventing.broker import dispatch
from eventing.dev.embedded import EmbeddedRedis
from tests.support.broker import (
    FAST,
    Reply,
    Subscriber,
    broker_manifest,
    dead_lettering,
    event,
    mesh,
    publish,
    replying,
    routed,
    settled,
    stored_events,
    trigger_manifest,
)
from tests.support.servers import running

TTL = "knativebrokerttl"


@pytest.fixture(autouse=True)
def untrimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream keeps every entry while a test reads it (a test trims it itself where that is the rule)."""
    monkeypatch.setattr(dispatch, "_TRIM_INTERVAL_SECONDS", 3600.0)


async def post(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(url, headers=headers, content=body)


async def test_a_reply_that_cannot_be_stored_fails_the_delivery_and_is_retried(
    make_settings, tmp_path
) -> None:
    """Knative's dispatcher sends a reply to the broker with the delivery's retry config and fails
    the delivery when it cannot (event_dispatcher.go, "send reply"): a reply Redis refuses is retried
    until Redis takes writes again, not left pending until a restart."""
    redis_server = EmbeddedRedis(tmp_path / "own-redis")
    redis_server.start()
    worker = Subscriber([Reply(200, event=event("ai.victor.test.answered", id="answer"), delay=0.3)])
    audit, sink = Subscriber(), Subscriber()
    try:
        async with (
            running(worker) as worker_url,
            running(audit) as audit_url,
            running(sink) as sink_url,
            mesh(
                make_settings(REDIS_URL=redis_server.url),
                tmp_path,
                broker_manifest(),
                trigger_manifest(
                    "work",
                    worker_url,
                    filter={"type": "ai.victor.test.happened"},
                    delivery={
                        "retry": 12,
                        "backoffPolicy": "linear",
                        "backoffDelay": "PT0.1S",
                        "deadLetterSink": {"uri": sink_url},
                    },
                ),
                trigger_manifest("audit", audit_url, filter={"type": "ai.victor.test.answered"}),
            ) as (ingress, broker),
        ):
            await publish(ingress, event(id="question"))
            await worker.wait_for(1)
            await broker.client.config_set("min-replicas-to-write", 1)  # Redis refuses every write
            try:
                await asyncio.sleep(1.0)  # the worker answers meanwhile; storing its reply fails
            finally:
                await broker.client.config_set("min-replicas-to-write", 0)
            [answer] = await audit.wait_for(1, timeout=20)
            await settled(broker, timeout=20)
    finally:
        redis_server.stop()
    assert answer.event.id == "answer"
    assert [r.event.id for r in worker.received] == ["question"]
    assert sink.received == []


@pytest.mark.parametrize(
    ("sent", "status", "stored"),
    [("10", 202, "9"), ("2", 202, "1"), ("1", 400, None), ("0", 400, None), ("-3", 400, None)],
)
async def test_the_ingress_decrements_the_ttl_and_refuses_an_event_whose_ttl_is_spent(
    make_settings, tmp_path, sent: str, status: int, stored: str | None
) -> None:
    """Knative's ingress runs the TTLDefaulter (pkg/broker/ttl.go: a TTL is decremented, never below 0)
    and answers 400 when the TTL is then <= 0 ("dropping event based on TTL status")."""
    async with mesh(make_settings(), tmp_path, broker_manifest()) as (ingress, broker):
        headers, body = to_binary(event(id="ttl", extensions={TTL: sent}))
        response = await post(ingress, headers, body)
        events = await stored_events(broker)
    assert response.status_code == status, response.text
    if stored is None:
        assert response.json()["error"] == "ttl_exhausted"
        assert events == []
    else:
        assert [e.extensions[TTL] for e in events] == [stored]


async def test_a_ttl_that_is_not_an_integer_counts_as_absent_and_never_stops_trimming(
    make_settings, tmp_path
) -> None:
    """Knative reads the TTL with the SDK's integer conversion and defaults one it cannot convert to 255
    ("Failed to convert existing TTL into integer, defaulting", ttl.go); '²' is a digit to Python's
    str.isdigit, not a number. Its reply is stored like any other, and every settled entry is trimmed."""
    worker = replying("ai.victor.test.answered")
    async with (
        running(worker) as url,
        mesh(
            make_settings(),
            tmp_path,
            broker_manifest(),
            trigger_manifest("work", url, filter={"type": "ai.victor.test.happened"}),
        ) as (ingress, broker),
    ):
        await publish(ingress, event(id="squared", extensions={TTL: "²"}))
        await settled(broker)
        stored = [(e.id, e.extensions[TTL]) for e in await stored_events(broker)]
        await publish(ingress, *(event(id=f"more-{n}") for n in range(20)))
        await settled(broker)
        await broker.stream.trim()
        left = await broker.client.xlen(broker.stream.key)
    assert stored == [("squared", "255"), ("reply-to-squared", "254")]
    assert left <= 1  # only the newest entry can stay: XTRIM MINID keeps the floor itself


async def test_a_reply_loop_ends_by_refusing_the_reply_and_dead_lettering_the_original(
    make_settings, tmp_path
) -> None:
    """Knative's ingress refuses a reply whose TTL is spent with 400; the dispatcher then sends the
    original to the dead-letter sink with knativeerrordest the reply destination (event_dispatcher.go)."""
    echo = Subscriber(respond=lambda e: Reply(200, event=event(e.type, id=f"{e.id}+")))
    sink = Subscriber()
    async with dead_lettering(make_settings(), tmp_path, echo, sink, 2) as (_, ingress, broker):
        await publish(ingress, event(id="spin", extensions={TTL: "3"}))
        [dead] = await sink.wait_for(1)
        await settled(broker)
    assert [r.event.id for r in echo.received] == ["spin", "spin+"]
    letter = dead.event
    assert letter.id == "spin+"
    assert letter.extensions["knativeerrorcode"] == "400"
    assert letter.extensions["knativeerrordest"] == "/victor/default"
    refusal = msgspec.json.decode(base64.b64decode(letter.extensions["knativeerrordata"]))
    assert refusal["error"] == "ttl_exhausted"


async def test_there_is_no_per_attempt_timeout_unless_delivery_timeout_is_set(
    make_settings, tmp_path
) -> None:
    """Knative sets a request timeout only from delivery.timeout (retries.go, RequestTimeout): a slow
    subscriber is waited for, not cut and retried."""
    slow, sink = Subscriber([Reply(202, delay=1.5)]), Subscriber()
    async with dead_lettering(make_settings(), tmp_path, slow, sink, 2) as (_, ingress, broker):
        await publish(ingress, event(id="slow"))
        await settled(broker)
    assert [d.delivery.timeout for d in broker.dispatchers] == [None]
    assert [r.event.id for r in slow.received] == ["slow"]
    assert sink.received == []


async def test_a_202_carrying_a_cloudevent_is_not_routed_as_a_reply(make_settings, tmp_path) -> None:
    """The data-plane contract: a 200 is an event reply, a 202 "event accepted" (data-plane.md,
    Event Acknowledgement); an event in a 202 is not a reply."""
    worker, audit = replying("ai.victor.test.answered", status=202), Subscriber()
    async with (
        running(worker) as worker_url,
        running(audit) as audit_url,
        mesh(
            make_settings(),
            tmp_path,
            broker_manifest(),
            trigger_manifest("work", worker_url, filter={"type": "ai.victor.test.happened"}),
            trigger_manifest("audit", audit_url, filter={"type": "ai.victor.test.answered"}),
        ) as (ingress, broker),
    ):
        await publish(ingress, event(id="accepted"))
        await worker.wait_for(1)
        await settled(broker)
        stored = [e.id for e in await stored_events(broker)]
    assert stored == ["accepted"]
    assert audit.received == []


async def test_double_quoted_ce_header_values_are_unquoted(make_settings, tmp_path) -> None:
    """CloudEvents HTTP binding 3.1.3.2: a header value MUST first be unescaped as an RFC 7230
    quoted-string, then percent-decoded once."""
    subscriber = Subscriber()
    async with (
        running(subscriber) as url,
        mesh(
            make_settings(),
            tmp_path,
            broker_manifest(),
            trigger_manifest("t", url, filter={"type": "ai.victor.test.happened"}),
        ) as (ingress, _),
    ):
        headers, body = to_binary(event(id="quoted"))
        headers["ce-type"] = '"ai.victor.test.happened"'
        headers["ce-subject"] = '"say \\"hi\\" 100%25"'
        response = await post(ingress, headers, body)
        [received] = await subscriber.wait_for(1)
    assert response.status_code == 202, response.text
    assert (received.event.type, received.event.subject) == ("ai.victor.test.happened", 'say "hi" 100%')


@pytest.mark.parametrize(
    ("attribute", "value"), [("id", 5), ("source", True), ("type", ["a"]), ("time", 1700000000)]
)
async def test_a_structured_event_with_a_context_attribute_that_is_not_a_string_is_refused(
    make_settings, tmp_path, attribute: str, value: object
) -> None:
    """CloudEvents JSON format 2.2: id, source, type, time ... are Strings in JSON; the SDK Knative
    uses refuses other JSON types, and the ingress answers 400 (binding.ToEvent failed)."""
    document = {
        "specversion": "1.0",
        "id": "typed",
        "source": "/tests/broker",
        "type": "ai.victor.test.happened",
        attribute: value,
    }
    async with mesh(make_settings(), tmp_path, broker_manifest()) as (ingress, broker):
        response = await post(
            ingress, {"content-type": "application/cloudevents+json"}, msgspec.json.encode(document)
        )
        events = await stored_events(broker)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_event"
    assert response.json()["detail"].startswith(f"attribute {attribute} must be a string")
    assert events == []


async def test_subscribers_get_kn_namespace_and_the_pass_through_headers_but_not_the_ttl(
    make_settings, tmp_path
) -> None:
    """Knative's filter deletes knativebrokerttl before delivering, forwards the ingress request's
    pass-through headers (utils.PassThroughHeaders: X-Request-Id, Knative-*), sets Kn-Namespace to the
    Trigger's namespace and Prefer: reply; its HTTP transport propagates traceparent/tracestate."""
    subscriber = Subscriber()
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"t": url}) as (ingress, _),
    ):
        headers, body = to_binary(event(id="headers"))
        headers.update(
            {
                "x-request-id": "req-42",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tracestate": "victor=1",
                "knative-hop": "ingress",
                "x-private": "not for subscribers",
                "cookie": "session=secret",
            }
        )
        assert (await post(ingress, headers, body)).status_code == 202
        [received] = await subscriber.wait_for(1)
    seen = received.headers
    assert seen["kn-namespace"] == "victor"
    assert seen["prefer"] == "reply"
    assert (seen["x-request-id"], seen["tracestate"], seen["knative-hop"]) == (
        "req-42",
        "victor=1",
        "ingress",
    )
    # The trace goes on under the broker's delivery span: same trace and flags, the span its own.
    version, trace_id, parent, flags = seen["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "01")
    assert len(parent) == 16 and parent != "b7ad6b7169203331"
    assert "x-private" not in seen and "cookie" not in seen
    assert "ce-knativebrokerttl" not in seen
    assert "ce-knativearrivaltime" in seen


async def test_knativeerrordata_is_cut_to_1024_characters(make_settings, tmp_path) -> None:
    """Knative base64-encodes the failed answer and cuts it to KnativeErrorDataExtensionMaxLength,
    1,024 characters (dispatchExecutionInfoTransformers)."""
    answer = bytes(range(256)) * 20  # 5,120 bytes
    subscriber, sink = Subscriber(default=Reply(422, answer)), Subscriber()
    async with dead_lettering(make_settings(), tmp_path, subscriber, sink, 0) as (_, ingress, _):
        await publish(ingress, event(id="long-error"))
        [dead] = await sink.wait_for(1)
    data = dead.event.extensions["knativeerrordata"]
    assert len(data) == 1024
    assert base64.b64decode(data) == answer[:768]


@pytest.mark.parametrize(
    ("policy", "delay", "least"),
    [("linear", "PT0.2S", [0.2, 0.4, 0.6]), ("exponential", "PT0.1S", [0.2, 0.4, 0.8])],
)
async def test_backoff_is_delay_times_n_linear_and_delay_times_2_to_the_n_exponential(
    make_settings, tmp_path, policy: str, delay: str, least: list[float]
) -> None:
    """Knative's delivery documentation: linear waits backoffDelay * <numberOfRetries>, exponential
    backoffDelay * 2^<numberOfRetries>. Sleeping guarantees the lower bounds; upper bounds would only
    measure how busy the machine is."""
    subscriber = Subscriber(default=Reply(503))
    async with (
        running(subscriber) as url,
        routed(
            make_settings(),
            tmp_path,
            {"t": url},
            delivery={"retry": 3, "backoffPolicy": policy, "backoffDelay": delay},
        ) as (ingress, broker),
    ):
        await publish(ingress, event())
        attempts = await subscriber.wait_for(4)
        await settled(broker)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert all(gap >= want * 0.95 for gap, want in zip(gaps, least, strict=True)), gaps
    assert len(subscriber.received) == 4


async def test_delivery_format_json_delivers_in_structured_mode(make_settings, tmp_path) -> None:
    """Trigger delivery.format json makes Knative's dispatcher force structured mode
    (kncloudevents.WithEventFormat: binding.WithForceStructured)."""
    subscriber = Subscriber()
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"t": url}, delivery={"format": "json"}) as (ingress, _),
    ):
        sent = event(id="structured", data={"n": 7})
        await publish(ingress, sent)
        [received] = await subscriber.wait_for(1)
    assert received.headers["content-type"].startswith("application/cloudevents+json")
    assert not any(name.startswith("ce-") for name in received.headers)
    document = msgspec.json.decode(received.body)
    assert (document["id"], document["data"]) == ("structured", {"n": 7})
    assert TTL not in document


@pytest.mark.parametrize(
    ("retry_after", "retry_after_max", "least"), [("1", "PT5S", 1.0), ("30", "PT0.5S", 0.5)]
)
async def test_retry_after_on_429_and_503_is_honoured_up_to_retry_after_max(
    make_settings, tmp_path, retry_after: str, retry_after_max: str, least: float
) -> None:
    """With delivery.retryAfterMax set, Knative waits the longer of its backoff and the answer's
    Retry-After (on 429 and 503 only), capped at retryAfterMax (retries.go, generateBackoffFn)."""
    subscriber = Subscriber([Reply(429, headers={"retry-after": retry_after}), Reply(202)])
    delivery = {"retry": 1, **FAST, "retryAfterMax": retry_after_max}
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"t": url}, delivery=delivery) as (ingress, broker),
    ):
        await publish(ingress, event(id="later"))
        first, second = await subscriber.wait_for(2)
        await settled(broker)
    assert second.at - first.at >= least * 0.95
    assert len(subscriber.received) == 2


async def test_ingress_path_errors_are_answered_as_knatives_ingress_answers_them(
    make_settings, tmp_path
) -> None:
    """Knative's ingress handler: `/` is 404, a path that is not /namespace/broker (one trailing slash
    trimmed) is 400 ("Malformed uri"); each body here is the one JSON error body."""
    headers, body = to_binary(event())
    async with mesh(make_settings(), tmp_path, broker_manifest()) as (ingress, _):
        base = ingress.rsplit("/", 2)[0]
        answers = {}
        for path in ("/", "/victor", "/victor/default/more", "/victor/default/"):
            response = await post(base + path, headers, body)
            error = response.json()["error"] if response.content else None
            answers[path] = (response.status_code, error)
    assert answers == {
        "/": (404, "not_found"),
        "/victor": (400, "malformed_path"),
        "/victor/default/more": (400, "malformed_path"),
        "/victor/default/": (202, None),
    }


async def test_a_structured_event_nested_too_deep_is_a_json_400_not_a_500(make_settings, tmp_path) -> None:
    """Knative's ingress answers 400 to any request binding.ToEvent cannot read; the answer here is
    the one JSON error body, never the server's plain-text 500."""
    head = b'{"specversion":"1.0","id":"deep","source":"/s","type":"ai.victor.test.happened","data":'
    body = head + b"[" * 20000 + b"]" * 20000 + b"}"
    async with mesh(make_settings(), tmp_path, broker_manifest()) as (ingress, broker):
        response = await post(ingress, {"content-type": "application/cloudevents+json"}, body)
        events = await stored_events(broker)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_event"
    assert response.json()["detail"].startswith("structured event body is not valid JSON")
    assert events == []
