"""Delivery to subscribers: Prefer: reply, retries, backoff, timeouts and the dead-letter sink."""

from __future__ import annotations

import base64

import msgspec
import pytest

from common.cloudevents import CloudEvent
from eventing.dev.embedded import free_port
from tests.support.broker import (
    FAST,
    Reply,
    Subscriber,
    broker_manifest,
    dead_lettered,
    dead_lettering,
    event,
    mesh,
    publish,
    routed,
    settled,
    trigger_manifest,
)
from tests.support.servers import running


async def test_delivery_is_binary_mode_and_asks_for_a_reply(make_settings, tmp_path) -> None:
    subscriber = Subscriber()
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"t": url + "/hook"}) as (ingress, _),
    ):
        await publish(ingress, event(id="e-1"))
        [received] = await subscriber.wait_for(1)
    assert received.path == "/hook"
    assert received.headers["prefer"] == "reply"
    assert received.headers["ce-id"] == "e-1"
    assert received.headers["content-type"] == "application/json"


@pytest.mark.parametrize("status", [404, 408, 409, 429, 500, 502, 503, 504])
async def test_retried_statuses_are_delivered_again(make_settings, tmp_path, status: int) -> None:
    subscriber, sink = Subscriber([Reply(status, b"not now")]), Subscriber()
    async with dead_lettering(make_settings(), tmp_path, subscriber, sink, 2) as (_, ingress, broker):
        await publish(ingress, event(id="e-retry"))
        attempts = await subscriber.wait_for(2)
        await settled(broker)
    assert [a.event.id for a in attempts] == ["e-retry", "e-retry"]
    assert len(subscriber.received) == 2
    assert sink.received == []


@pytest.mark.parametrize("status", [400, 403, 413, 422])
async def test_other_4xx_go_to_the_dead_letter_sink_after_one_attempt(
    make_settings, tmp_path, status: int
) -> None:
    body = b'{"status_code":%d,"error":"rejected","detail":"bad input"}' % status
    subscriber, sink = (
        Subscriber(default=Reply(status, body, {"content-type": "application/json"})),
        Subscriber(),
    )
    async with dead_lettering(make_settings(), tmp_path, subscriber, sink, 3, "/fn") as (
        url,
        ingress,
        broker,
    ):
        sent = event(id="poison", data={"x": 1})
        await publish(ingress, sent)
        [dead] = await sink.wait_for(1)
        await settled(broker)
    assert len(subscriber.received) == 1
    letter = dead.event
    assert (letter.id, letter.type, letter.source, letter.data) == (
        sent.id,
        sent.type,
        sent.source,
        sent.data,
    )
    assert letter.extensions["knativeerrordest"] == url + "/fn"
    assert letter.extensions["knativeerrorcode"] == str(status)
    assert base64.b64decode(letter.extensions["knativeerrordata"]) == body


async def test_exhausted_retries_dead_letter_with_the_last_answer(make_settings, tmp_path) -> None:
    subscriber = Subscriber(default=Reply(503, b"overloaded"))
    sink = Subscriber()
    async with dead_lettering(make_settings(), tmp_path, subscriber, sink, 2) as (_, ingress, broker):
        await publish(ingress, event(id="e-503"))
        [dead] = await sink.wait_for(1)
        await settled(broker)
    assert len(subscriber.received) == 3
    assert dead.event.extensions["knativeerrorcode"] == "503"
    assert base64.b64decode(dead.event.extensions["knativeerrordata"]) == b"overloaded"


async def test_unreachable_subscriber_is_retried_then_dead_lettered_as_a_dispatch_error(
    make_settings, tmp_path
) -> None:
    sink = Subscriber()
    dead_url = f"http://127.0.0.1:{free_port()}/gone"
    async with (
        running(sink) as sink_url,
        routed(make_settings(), tmp_path, {"t": dead_url}, delivery=dead_lettered(1, sink_url)) as (
            ingress,
            _,
        ),
    ):
        await publish(ingress, event(id="e-net"))
        [dead] = await sink.wait_for(1)
    assert dead.event.extensions["knativeerrordest"] == dead_url
    assert dead.event.extensions["knativeerrorcode"] == "500"
    assert base64.b64decode(dead.event.extensions["knativeerrordata"]).startswith(
        b"dispatch error: ConnectionRefusedError"
    )


async def test_an_attempt_past_the_timeout_is_retried(make_settings, tmp_path) -> None:
    subscriber = Subscriber([Reply(202, delay=0.8)])
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"t": url}, delivery={"retry": 1, **FAST, "timeout": "PT0.2S"}) as (
            ingress,
            broker,
        ),
    ):
        await publish(ingress, event(id="e-slow"))
        attempts = await subscriber.wait_for(2)
        await settled(broker)
    assert [a.event.id for a in attempts] == ["e-slow", "e-slow"]


async def test_a_2xx_body_that_is_not_a_cloudevent_is_a_failed_delivery(make_settings, tmp_path) -> None:
    subscriber = Subscriber(default=Reply(200, b"hello", {"content-type": "text/plain"}))
    sink = Subscriber()
    async with dead_lettering(make_settings(), tmp_path, subscriber, sink, 1) as (_, ingress, broker):
        await publish(ingress, event(id="e-body"))
        [dead] = await sink.wait_for(1)
        await settled(broker)
    assert len(subscriber.received) == 2  # a 502 is retried
    assert dead.event.extensions["knativeerrorcode"] == "502"
    assert base64.b64decode(dead.event.extensions["knativeerrordata"]) == b"hello"


async def test_a_2xx_with_an_empty_body_is_delivered(make_settings, tmp_path) -> None:
    subscriber = Subscriber(default=Reply(200))
    sink = Subscriber()
    async with (
        running(subscriber) as url,
        running(sink) as sink_url,
        routed(make_settings(), tmp_path, {"t": url}, broker_delivery=dead_lettered(3, sink_url)) as (
            ingress,
            broker,
        ),
    ):
        await publish(ingress, event(id="e-ok"))
        await settled(broker)
    assert len(subscriber.received) == 1
    assert sink.received == []


async def test_trigger_delivery_wins_over_the_brokers(make_settings, tmp_path) -> None:
    failing = Subscriber(default=Reply(500))
    broker_sink, trigger_sink = Subscriber(), Subscriber()
    async with (
        running(failing) as url,
        running(broker_sink) as broker_sink_url,
        running(trigger_sink) as trigger_sink_url,
        mesh(
            make_settings(),
            tmp_path,
            broker_manifest(delivery=dead_lettered(2, broker_sink_url)),
            trigger_manifest(
                "own", url + "/own", delivery={"retry": 0, "deadLetterSink": {"uri": trigger_sink_url}}
            ),
            trigger_manifest("inherits", url + "/inherits"),
        ) as (ingress, broker),
    ):
        await publish(ingress, event(id="e-1"))
        await trigger_sink.wait_for(1)
        await broker_sink.wait_for(1)
        await settled(broker)
    assert len(failing.paths("/own")) == 1
    assert len(failing.paths("/inherits")) == 3
    assert trigger_sink.received[0].event.extensions["knativeerrordest"] == url + "/own"
    assert broker_sink.received[0].event.extensions["knativeerrordest"] == url + "/inherits"


async def test_dead_letters_without_a_local_sink_are_kept_in_redis(make_settings, tmp_path) -> None:
    subscriber = Subscriber(default=Reply(422, b"no"))
    unmapped = {
        "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "victor-dead-letters"}
    }
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"t": url}, broker_delivery=dead_lettered(1, unmapped)) as (
            ingress,
            broker,
        ),
    ):
        await publish(ingress, event(id="kept"))
        await settled(broker)
        entries = await broker.client.xrange(broker.stream.dead_letters_key)
    [(_, fields)] = entries
    letter = msgspec.msgpack.decode(fields[b"e"], type=CloudEvent)
    assert letter.id == "kept"
    assert letter.extensions["knativeerrorcode"] == "422"
    assert base64.b64decode(letter.extensions["knativeerrordata"]) == b"no"
