"""Delivered events are authenticated (VICTOR_EVENT_AUTH) at the broker ingress and on every function,
through the real local broker; the /v1 routes are rate-limited per key across replicas sharing Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from common import metrics
from common.app import create_app
from common.auth import event_credentials
from common.cloudevents import new_event, to_binary
from eventing.dev.embedded import free_port
from eventing.schemas.health import HEALTH_REPORTED, PING
from functions.health.function import FUNCTION as HEALTH
from functions.tools.function import build_function as tools_function
from functions.tools.settings import ToolsSettings
from tests.support.broker import (
    Reply,
    Subscriber,
    broker_manifest,
    dead_lettered,
    dead_lettering,
    event,
    mesh,
    publish,
    settled,
    trigger_manifest,
)
from tests.support.servers import running

TOKEN = "local-event-token-0123456789abcdef"


def token_settings(make_settings, token: str = TOKEN):
    return make_settings(VICTOR_EVENT_AUTH="token", VICTOR_EVENT_TOKEN=token)


async def test_the_broker_ingress_stores_nothing_without_the_token_and_delivers_it_with_the_token(
    make_settings, tmp_path: Path
) -> None:
    subscriber = Subscriber()
    settings = token_settings(make_settings)
    async with running(subscriber) as url:
        objects = (broker_manifest(), trigger_manifest("t", url))
        async with mesh(settings, tmp_path, *objects) as (ingress, broker), httpx.AsyncClient() as client:
            refused = []
            for authorization in (None, "Bearer not-the-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
                headers, body = to_binary(event(id=f"refused-{len(refused)}"))
                if authorization is not None:
                    headers["authorization"] = authorization
                response = await client.post(ingress, headers=headers, content=body)
                refused.append(
                    (response.status_code, response.headers["www-authenticate"], response.json()["error"])
                )
            await publish(ingress, event(id="accepted-1"), token=TOKEN)
            [received] = await subscriber.wait_for(1)
            await settled(broker)
    assert refused == [(401, "Bearer", "unauthorized")] * 4
    assert received.event.id == "accepted-1"
    # The broker adds the token to every delivery; the refused events were never stored.
    assert received.headers["authorization"] == f"Bearer {TOKEN}"
    assert [r.event.id for r in subscriber.received] == ["accepted-1"]


async def test_a_401_from_a_subscriber_is_not_retried_and_goes_to_the_dead_letter_sink(
    make_settings, tmp_path: Path
) -> None:
    subscriber, sink = Subscriber(default=Reply(401, b'{"error":"unauthorized"}')), Subscriber()
    settings = token_settings(make_settings)
    async with dead_lettering(settings, tmp_path, subscriber, sink, 3) as (_, ingress, broker):
        await publish(ingress, event(id="e-401"), token=TOKEN)
        [dead] = await sink.wait_for(1)
        await settled(broker)
    assert len(subscriber.received) == 1  # as in Knative, 401 is not a retryable status
    assert dead.event.extensions["knativeerrorcode"] == "401"
    assert dead.headers["authorization"] == f"Bearer {TOKEN}"


async def test_a_function_behind_the_broker_answers_events_with_the_shared_token_and_refuses_another(
    make_settings, tmp_path: Path
) -> None:
    reports, sink = Subscriber(), Subscriber()
    settings = token_settings(make_settings)
    async with (
        running(create_app(HEALTH, settings)) as health_url,
        running(reports) as reports_url,
        running(sink) as sink_url,
    ):
        objects = (
            broker_manifest(),
            trigger_manifest("ping", health_url, filter={"type": PING}, delivery=dead_lettered(3, sink_url)),
            trigger_manifest("reports", reports_url, filter={"type": HEALTH_REPORTED}),
        )
        async with mesh(settings, tmp_path / "same", *objects) as (ingress, broker):
            await publish(ingress, new_event(PING, "/tests/auth", None, id="ping-same"), token=TOKEN)
            [report] = await reports.wait_for(1)
            await settled(broker)
        # A broker holding another token: the function refuses it with a 401, settled at once.
        other = token_settings(make_settings, "another-token-fedcba9876543210")
        async with mesh(other, tmp_path / "other", *objects) as (ingress, broker):
            await publish(
                ingress,
                new_event(PING, "/tests/auth", None, id="ping-other"),
                token="another-token-fedcba9876543210",
            )
            [dead] = await sink.wait_for(1)
            await settled(broker)
    assert (report.event.type, report.event.subject) == (HEALTH_REPORTED, "ping-same")
    assert dead.event.id == "ping-other"
    assert dead.event.extensions["knativeerrorcode"] == "401"
    assert [r.event.id for r in reports.received] == [report.event.id]


async def test_an_unreachable_oidc_issuer_is_a_503_the_sender_retries(make_settings) -> None:
    settings = make_settings(VICTOR_EVENT_AUTH="oidc", VICTOR_OIDC_ISSUER=f"http://127.0.0.1:{free_port()}")
    async with running(create_app(HEALTH, settings)) as url, httpx.AsyncClient() as client:
        headers, body = to_binary(new_event(PING, "/tests/auth", None))
        response = await client.post(
            f"{url}/", headers={**headers, "authorization": "Bearer a.b.c"}, content=body
        )
    assert (response.status_code, response.json()["error"]) == (503, "oidc_unavailable")
    assert response.headers["retry-after"] == "5"


def test_events_a_function_sends_carry_its_credentials(make_settings, tmp_path: Path) -> None:
    assert event_credentials(make_settings()) == {}
    assert event_credentials(token_settings(make_settings)) == {"authorization": f"Bearer {TOKEN}"}
    projected = tmp_path / "broker-token"
    projected.write_text("eyJprojected.token.value\n")
    oidc = make_settings(
        VICTOR_EVENT_AUTH="oidc",
        VICTOR_OIDC_ISSUER="https://issuer.example",
        VICTOR_OIDC_TOKEN_FILE=str(projected),
    )
    assert event_credentials(oidc) == {"authorization": "Bearer eyJprojected.token.value"}


def rate_limited(function: str) -> float:
    return metrics.REGISTRY.get_sample_value("victor_rate_limited_total", {"function": function}) or 0.0


async def test_the_rate_limit_of_a_key_is_shared_by_two_replicas_through_redis(make_settings) -> None:
    busy, quiet = f"busy-{uuid.uuid4().hex}", f"quiet-{uuid.uuid4().hex}"
    settings = make_settings(VICTOR_API_KEYS=f"{busy},{quiet}", VICTOR_RATE_LIMIT="3/minute")
    before = rate_limited("health")
    async with (
        running(create_app(HEALTH, settings)) as first,
        running(create_app(HEALTH, settings)) as second,
        httpx.AsyncClient() as client,
    ):
        answers = []
        for replica in (first, second, first, second, first):
            response = await client.get(f"{replica}/v1/status", headers={"authorization": f"Bearer {busy}"})
            answers.append(response.status_code)
        refused = response
        other_key = await client.get(f"{second}/v1/status", headers={"x-api-key": quiet})
    assert answers == [200, 200, 200, 429, 429]
    assert refused.json()["error"] == "rate_limited"
    assert refused.json()["detail"].startswith(
        "this API key is over its rate limit of 3/minute (VICTOR_RATE_LIMIT)"
    )
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert other_key.status_code == 200  # the limit is per key
    assert rate_limited("health") - before == 2


async def test_without_redis_the_rate_limit_fails_open_and_counts_the_unchecked_requests(
    make_settings,
) -> None:
    key = f"open-{uuid.uuid4().hex}"
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(VICTOR_API_KEYS=key, VICTOR_RATE_LIMIT="1/minute", REDIS_URL=dead_redis)

    def unchecked() -> float:
        return (
            metrics.REGISTRY.get_sample_value("victor_rate_limit_unchecked_total", {"function": "tools"})
            or 0.0
        )

    before = unchecked()
    async with (
        running(create_app(tools_function(ToolsSettings()), settings)) as url,
        httpx.AsyncClient() as client,
    ):
        statuses = [
            (await client.get(f"{url}/v1/tools", headers={"x-api-key": key})).status_code for _ in range(3)
        ]
        unkeyed = await client.get(f"{url}/v1/tools")
    assert statuses == [200, 200, 200]
    assert unkeyed.status_code == 401  # failing open never opens the key check
    assert unchecked() - before == 3
