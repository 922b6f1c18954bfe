"""Stores go away and come back: Redis while the functions and the broker run, PostgreSQL (a server of
the test's own, stopped and started again) under every function in both serving modes and behind the
real broker. A store that is down is a 503 with Retry-After, which the broker retries: nothing is
answered 500 and nothing is dead-lettered.
"""

from __future__ import annotations

import asyncio
import dataclasses
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.app import create_app
from common.cloudevents import CloudEvent, from_http, new_event, to_binary
from common.metrics import REGISTRY
from common.store import Store, store_outage
from eventing.dev.embedded import EmbeddedRedis, free_port
from eventing.schemas.chat import CHAT_COMPLETED, CHAT_REQUESTED, ChatRequested
from eventing.schemas.health import HEALTH_REPORTED
from eventing.schemas.tools import TOOLS_COMPLETED, TOOLS_REQUESTED, ToolCall, ToolsRequested
from functions.chat.function import build_function as chat_function
from functions.health.function import FUNCTION as SPEC
from functions.tools.function import build_function as tools_function
from functions.tools.settings import ToolsSettings
from tests.conftest import Services
from tests.integration.test_serving_parity import both_modes
from tests.support.broker import (
    Subscriber,
    broker_manifest,
    broker_settings,
    mesh,
    publish,
    served_broker,
    settled,
    trigger_manifest,
    write_objects,
)
from tests.support.chat import anthropic_env, chat_settings, fake_anthropic
from tests.support.databases import private_postgres
from tests.support.fake_anthropic import Reply, text
from tests.support.foundation import MakeSettings, unique
from tests.support.servers import running

PING = {
    "ce-specversion": "1.0",
    "ce-source": "/apis/v1/namespaces/default/pingsources/health",
    "ce-type": "dev.knative.sources.ping",
}


async def redis_state(client: httpx.AsyncClient) -> tuple[int, str]:
    response = await client.get("/health")
    states = {d["name"]: d["state"] for d in response.json()["dependencies"]}
    return response.status_code, states["redis"]


async def test_the_function_keeps_serving_while_redis_is_down_and_sees_it_return(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "private-redis")
    redis.start()
    # The health function, with readiness declared to need Redis so readiness follows it.
    spec = dataclasses.replace(SPEC, requires=("redis",))
    app = create_app(spec, make_settings(REDIS_URL=redis.url))
    runtime = app.state.runtime
    try:
        async with running(app) as url, httpx.AsyncClient(base_url=url) as client:
            assert await redis_state(client) == (200, "up")
            assert await runtime.cache.set("outage:key", b"kept", ttl=60) is True

            redis.stop()

            assert (await client.get("/health/live")).status_code == 200
            assert await redis_state(client) == (503, "down")
            assert (await client.get("/health/ready")).json() == {
                "status": "not ready",
                "reason": "waiting for redis",
            }
            status = await client.get("/v1/status")
            assert status.status_code == 200
            components = {c["name"]: c["state"] for c in status.json()["components"]}
            assert components == {"redis": "down", "postgres": "up"}
            ping = await client.post("/", headers={**PING, "ce-id": unique("outage")})
            assert ping.status_code == 200
            report = from_http(ping.headers, ping.content, max_bytes=1 << 20).json()
            assert report["status"] == "degraded"
            # The cache fails soft: a miss, and a dropped write, never an exception.
            assert await runtime.cache.get("outage:key") is None
            assert await runtime.cache.set("outage:other", b"x") is False

            redis.start()

            assert await redis_state(client) == (200, "up")
            assert (await client.get("/health/ready")).status_code == 200
            # Appendonly persistence: the value written before the outage is back.
            await asyncio.sleep(1.0)  # the cache's back-off after a failure
            assert await runtime.cache.get("outage:key") == b"kept"
    finally:
        redis.stop()


async def test_a_database_url_asyncpg_refuses_is_reported_not_a_crash(make_settings: MakeSettings) -> None:
    # Valid as a URL, so settings accept it; asyncpg refuses the option only when it connects.
    settings = make_settings(
        DATABASE_URL="postgresql://victor:pw-not-shown@127.0.0.1:5432/victor?sslmode=sometimes"
    )
    async with running(create_app(SPEC, settings)) as url, httpx.AsyncClient(base_url=url) as client:
        health = (await client.get("/health")).json()
        postgres = next(d for d in health["dependencies"] if d["name"] == "postgres")
        assert postgres["state"] == "down"
        assert postgres["error"].startswith(
            "cannot connect to PostgreSQL: `sslmode` parameter must be one of"
        )
        ping = await client.post("/", headers={**PING, "ce-id": unique("bad-dsn")})
        assert (ping.status_code, ping.json()["error"]) == (503, "store_unavailable")
        assert "pw-not-shown" not in ping.text + str(health)


def chat_requested(message: str) -> CloudEvent:
    payload = ChatRequested(message=message)
    return new_event(CHAT_REQUESTED, "/tests/outage", payload, id=unique("outage-chat"))


def tools_requested() -> CloudEvent:
    payload = ToolsRequested(
        conversation_id=unique("outage"), turn=0, calls=[ToolCall(id="t1", name="list_directory")]
    )
    return new_event(TOOLS_REQUESTED, "/tests/outage", payload, id=unique("outage-tools"))


def delivery(name: str) -> tuple[dict[str, str], bytes]:
    """A new event for the function `name`, as the broker delivers it (binary mode)."""
    if name == "chat":
        return to_binary(chat_requested("hi"))
    if name == "tools":
        return to_binary(tools_requested())
    return {**PING, "ce-id": unique("outage-ping")}, b""


def refusal_of(response: httpx.Response) -> tuple[int, str, str | None]:
    """Status, error code and Retry-After of a refusal."""
    return response.status_code, response.json().get("error"), response.headers.get("retry-after")


def reply_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, from_http(response.headers, response.content, max_bytes=1 << 20).type


UNAVAILABLE = (503, "store_unavailable", "5")
MODES = ("litestar", "functions-framework")
REPLIES = {"chat": CHAT_COMPLETED, "tools": TOOLS_COMPLETED, "health": HEALTH_REPORTED}


async def test_postgres_away_is_a_503_with_retry_after_for_every_function_in_both_modes_then_served(
    make_settings: MakeSettings,
) -> None:
    async with private_postgres() as postgres, fake_anthropic() as (llm, llm_url), AsyncExitStack() as stack:
        llm.default = Reply([text("Served.")])
        settings = make_settings(DATABASE_URL=postgres.url, **anthropic_env(llm_url))
        specs = {
            "chat": chat_function(chat_settings(wait_timeout=300.0)),
            "tools": tools_function(ToolsSettings()),
            "health": SPEC,
        }
        served = {
            name: await stack.enter_async_context(both_modes(spec, settings)) for name, spec in specs.items()
        }
        events = {(name, mode): delivery(name) for name in served for mode in MODES}
        before = [
            (await served["chat"][mode].post("/v1/chat", json={"message": "up"})).status_code
            for mode in MODES
        ]

        postgres.stop()
        away = {}
        for (name, mode), (headers, body) in events.items():
            away[f"{name} {mode} POST /"] = refusal_of(
                await served[name][mode].post("/", headers=headers, content=body)
            )
        for mode in MODES:
            chat = served["chat"][mode]
            away[f"chat {mode} POST /v1/chat"] = refusal_of(
                await chat.post("/v1/chat", json={"message": "hi"})
            )
            away[f"chat {mode} GET /v1/conversations"] = refusal_of(await chat.get("/v1/conversations/c1"))
        postgres.start()

        # The same events again, as the broker retries them, and a new message.
        back = {
            f"{name} {mode}": reply_of(await served[name][mode].post("/", headers=headers, content=body))
            for (name, mode), (headers, body) in events.items()
        }
        after = [
            (await served["chat"][mode].post("/v1/chat", json={"message": "again"})).status_code
            for mode in MODES
        ]
    assert before == [200, 200]
    assert len(away) == 3 * 2 + 2 * 2
    assert away == dict.fromkeys(away, UNAVAILABLE)
    assert back == {f"{name} {mode}": (200, REPLIES[name]) for name in specs for mode in MODES}
    assert after == [200, 200]


def chat_requests_unavailable() -> float:
    return (
        REGISTRY.get_sample_value(
            "victor_events_total", {"function": "chat", "type": CHAT_REQUESTED, "outcome": "unavailable"}
        )
        or 0.0
    )


async def test_an_event_delivered_while_postgres_is_away_is_retried_and_completes_once_it_is_back(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    dead_letters, completed = Subscriber(), Subscriber()
    chat_port = free_port()
    chat_url = f"http://127.0.0.1:{chat_port}"
    # Retries 0.2 s, 0.4 s, ... apart: about 40 s in all before an event would be dead-lettered.
    patient = {"retry": 20, "backoffPolicy": "linear", "backoffDelay": "PT0.2S"}
    async with (
        private_postgres() as postgres,
        fake_anthropic() as (llm, llm_url),
        running(dead_letters) as sink,
        running(completed) as recorder,
    ):
        llm.push(Reply([text("Answered before.")]), Reply([text("Answered after the outage.")]))
        settings = make_settings(DATABASE_URL=postgres.url, **anthropic_env(llm_url))
        objects = (
            broker_manifest({**patient, "deadLetterSink": {"uri": sink}}),
            trigger_manifest("chat", f"{chat_url}/", filter={"type": CHAT_REQUESTED}),
            trigger_manifest("done", recorder, filter={"type": CHAT_COMPLETED}),
        )
        async with mesh(settings, tmp_path, *objects) as (ingress, _):
            chat = create_app(
                chat_function(chat_settings()),
                make_settings(DATABASE_URL=postgres.url, VICTOR_BROKER_URL=ingress, **anthropic_env(llm_url)),
            )
            async with running(chat, port=chat_port):
                await publish(ingress, chat_requested("hello"))
                await completed.wait_for(1)  # the chat function's connections to PostgreSQL are open
                postgres.stop()
                refused = chat_requests_unavailable()
                event = chat_requested("are you there?")
                await publish(ingress, event)
                for _ in range(600):  # until two deliveries were refused (at most 30 s)
                    if chat_requests_unavailable() >= refused + 2:
                        break
                    await asyncio.sleep(0.05)
                retried = chat_requests_unavailable() - refused
                postgres.start()
                replies = await completed.wait_for(2, timeout=40)
    assert retried >= 2
    reply = replies[1].event
    assert reply.type == CHAT_COMPLETED
    assert reply.json()["request_id"] == event.id
    assert reply.json()["answer"] == "Answered after the outage."
    assert len(llm.requests) == 2
    assert dead_letters.received == []


async def test_the_broker_answers_503_with_retry_after_while_redis_is_away_and_delivers_once_it_is_back(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "broker-redis")
    redis.start()
    subscriber = Subscriber()
    try:
        async with running(subscriber) as url:
            settings = make_settings(REDIS_URL=redis.url)
            config = broker_settings(
                settings, write_objects(tmp_path, broker_manifest(), trigger_manifest("t", url))
            )
            async with served_broker(settings, config) as (ingress, broker), httpx.AsyncClient() as client:
                before = new_event("ai.victor.test.happened", "/tests/outage", {"n": 1}, id=unique("before"))
                await publish(ingress, before)
                await subscriber.wait_for(1)
                await settled(broker)  # acknowledged: not delivered again after the outage

                redis.stop()
                headers, body = to_binary(
                    new_event("ai.victor.test.happened", "/tests/outage", {"n": 2}, id=unique("away"))
                )
                away = await client.post(ingress, headers=headers, content=body)
                redis.start()

                after = new_event("ai.victor.test.happened", "/tests/outage", {"n": 3}, id=unique("after"))
                await publish(ingress, after)
                received = await subscriber.wait_for(2)
    finally:
        redis.stop()
    assert (away.status_code, away.json()["error"], away.headers.get("retry-after")) == (
        503,
        "unavailable",
        "5",
    )
    assert [r.event.id for r in received] == [before.id, after.id]


async def test_store_errors_are_503s_and_other_errors_are_not(services: Services, tmp_path: Path) -> None:
    store = Store(services.database_url, min_size=1, max_size=1)
    pool = await store.pool()
    try:
        async with pool.acquire():  # the pool's only connection is taken
            try:
                await pool.acquire(timeout=0.05)
            except TimeoutError as exc:
                exhausted = store_outage(exc)
    finally:
        await store.close()
    refused = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        await refused.ping()
    except RedisError as exc:
        redis_away = store_outage(exc)
    finally:
        await refused.aclose()
    try:
        (tmp_path / "missing").read_bytes()
    except OSError as exc:
        not_a_store = store_outage(exc)
    assert exhausted is not None and redis_away is not None
    assert (exhausted.status, exhausted.code, exhausted.headers) == (
        503,
        "store_unavailable",
        {"retry-after": "5"},
    )
    assert exhausted.message == "PostgreSQL is unavailable (TimeoutError); retry later"
    assert redis_away.message == "Redis is unavailable (ConnectionError); retry later"
    assert not_a_store is None
