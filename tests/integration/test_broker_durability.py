"""At-least-once across a broker restart, and concurrent, bounded delivery that never blocks ingress."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from common.cloudevents import to_binary
from eventing.dev.embedded import EmbeddedRedis, free_port
from tests.support.broker import (
    Reply,
    Subscriber,
    event,
    publish,
    routed,
    settled,
)
from tests.support.servers import running


async def test_events_pending_at_a_restart_are_delivered_by_the_next_broker(make_settings, tmp_path) -> None:
    port = free_port()
    stream = f"victor:test-broker:{uuid.uuid4().hex}"
    routes = {"t": f"http://127.0.0.1:{port}/fn"}
    delivery = {"retry": 1000, "backoffPolicy": "linear", "backoffDelay": "PT0.2S"}
    settings = make_settings()
    sent = [event(id=f"durable-{n}") for n in range(5)]
    async with routed(settings, tmp_path, routes, delivery=delivery, stream=stream) as (ingress, broker):
        await publish(ingress, *sent)  # the subscriber is down: every delivery is retrying
        for _ in range(500):
            summary = await broker.client.xpending(stream, "trigger:t")
            if summary["pending"] == 5:
                break
            await asyncio.sleep(0.01)
        assert summary["pending"] == 5
    subscriber = Subscriber()
    async with (
        running(subscriber, port=port),
        routed(settings, tmp_path, routes, delivery=delivery, stream=stream) as (_, broker),
    ):
        received = await subscriber.wait_for(5)
        await settled(broker)
    assert sorted(r.event.id for r in received) == [e.id for e in sent]
    assert {r.path for r in received} == {"/fn"}


async def test_a_slow_subscriber_is_delivered_to_concurrently_within_the_worker_bound(
    make_settings, tmp_path
) -> None:
    subscriber = Subscriber(hold_until_in_flight=3)
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"t": url}, VICTOR_BROKER_WORKERS="3") as (ingress, broker),
    ):
        await publish(ingress, *(event(id=f"c-{n}") for n in range(6)))
        await subscriber.wait_for(3)
        # Deliveries are held at the subscriber; ingress still answers at once.
        await publish(ingress, event(id="c-6"))
        await subscriber.wait_for(7)
        await settled(broker)
    assert subscriber.most_in_flight == 3
    assert sorted(r.event.id for r in subscriber.received) == [f"c-{n}" for n in range(7)]


async def test_an_event_is_delivered_once_to_each_matching_trigger(make_settings, tmp_path) -> None:
    one, two = Subscriber(), Subscriber(default=Reply(202))
    async with (
        running(one) as one_url,
        running(two) as two_url,
        routed(make_settings(), tmp_path, {"one": one_url, "two": two_url}) as (ingress, broker),
    ):
        await publish(ingress, *(event(id=f"fan-{n}") for n in range(20)))
        await settled(broker)
    assert sorted(r.event.id for r in one.received) == sorted(f"fan-{n}" for n in range(20))
    assert sorted(r.event.id for r in two.received) == sorted(f"fan-{n}" for n in range(20))


async def test_settled_entries_are_trimmed_from_the_stream(make_settings, tmp_path) -> None:
    one, two = Subscriber(), Subscriber()
    async with (
        running(one) as one_url,
        running(two) as two_url,
        routed(make_settings(), tmp_path, {"a": one_url, "b": two_url}) as (ingress, broker),
    ):
        await publish(ingress, *(event(id=f"trim-{n}") for n in range(10)))
        await settled(broker)
        assert await broker.client.xlen(broker.stream.key) == 10
        await broker.stream.trim()
        # Everything below the groups' last-read entry goes; that entry is kept as the floor.
        assert await broker.client.xlen(broker.stream.key) == 1


async def test_a_redis_outage_is_503_at_ingress_and_accepted_events_survive_it(
    make_settings, tmp_path
) -> None:
    redis_server = EmbeddedRedis(tmp_path / "own-redis")
    redis_server.start()
    port = free_port()
    try:
        settings = make_settings(REDIS_URL=redis_server.url)
        delivery = {"retry": 1000, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"}
        routes = {"t": f"http://127.0.0.1:{port}/"}
        async with (
            routed(settings, tmp_path, routes, delivery=delivery) as (ingress, broker),
            httpx.AsyncClient() as client,
        ):
            await publish(ingress, event(id="before"))  # accepted; its subscriber is down
            redis_server.stop()
            headers, body = to_binary(event(id="during"))
            refused = await client.post(ingress, headers=headers, content=body)
            assert refused.status_code == 503
            assert refused.json()["error"] == "unavailable"
            redis_server.start()  # same port and data directory: the append-only file is replayed
            subscriber = Subscriber()
            async with running(subscriber, port=port):
                await publish(ingress, event(id="after"))
                received = await subscriber.wait_for(2, timeout=20)
                await settled(broker, timeout=20)
        assert sorted(r.event.id for r in received) == ["after", "before"]
    finally:
        redis_server.stop()


async def test_the_broker_recovers_when_redis_returns_empty(make_settings, tmp_path) -> None:
    subscriber = Subscriber()
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"t": url}) as (ingress, broker),
    ):
        await publish(ingress, event(id="first"))
        await subscriber.wait_for(1)
        await broker.client.delete(broker.stream.key)  # as if Redis restarted without persistence
        await publish(ingress, event(id="second"))
        received = await subscriber.wait_for(2, timeout=15)
    assert [r.event.id for r in received] == ["first", "second"]
