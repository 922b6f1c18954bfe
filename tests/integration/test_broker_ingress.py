"""Broker ingress `POST /{namespace}/{broker}` over real HTTP with real Redis."""

from __future__ import annotations

import httpx

from common.cloudevents import to_binary, to_structured
from tests.support.broker import Subscriber, broker_manifest, event, mesh, routed
from tests.support.servers import running


async def test_valid_event_is_accepted_with_202_and_delivered_stamped(make_settings, tmp_path) -> None:
    subscriber = Subscriber()
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"all": url + "/all"}) as (ingress, _),
    ):
        sent = event(data={"hello": "world"}, subject="s-1")
        headers, body = to_binary(sent)
        async with httpx.AsyncClient() as client:
            response = await client.post(ingress, headers=headers, content=body)
        assert (response.status_code, response.content) == (202, b"")
        [received] = await subscriber.wait_for(1)
        delivered = received.event
        assert (delivered.id, delivered.source, delivered.type, delivered.subject) == (
            sent.id,
            sent.source,
            sent.type,
            "s-1",
        )
        assert received.body == body
        # The TTL is the broker's own: Knative's filter removes it before delivering.
        assert "knativebrokerttl" not in delivered.extensions
        assert delivered.extensions["knativearrivaltime"].endswith("Z")


async def test_structured_mode_event_is_accepted(make_settings, tmp_path) -> None:
    subscriber = Subscriber()
    async with (
        running(subscriber) as url,
        routed(make_settings(), tmp_path, {"all": url}) as (ingress, _),
    ):
        sent = event(data={"mode": "structured"})
        headers, body = to_structured(sent)
        async with httpx.AsyncClient() as client:
            response = await client.post(ingress, headers=headers, content=body)
        assert response.status_code == 202
        [received] = await subscriber.wait_for(1)
        assert received.event.id == sent.id
        assert received.event.json() == {"mode": "structured"}


async def test_invalid_event_is_refused_with_400_and_a_json_error(make_settings, tmp_path) -> None:
    async with (
        mesh(make_settings(), tmp_path, broker_manifest()) as (ingress, _),
        httpx.AsyncClient() as client,
    ):
        missing_source = {
            "ce-specversion": "1.0",
            "ce-id": "1",
            "ce-type": "t",
            "content-type": "application/json",
        }
        response = await client.post(ingress, headers=missing_source, content=b"{}")
        assert response.status_code == 400
        assert response.json() == {
            "status_code": 400,
            "error": "invalid_event",
            "detail": "required attribute source is missing",
        }
        plain = await client.post(ingress, content=b"hello", headers={"content-type": "text/plain"})
        assert plain.status_code == 400
        assert plain.json()["detail"].startswith("not a CloudEvent")


async def test_malformed_structured_events_get_a_json_400_naming_the_problem(make_settings, tmp_path) -> None:
    structured = {"content-type": "application/cloudevents+json"}
    envelope = b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": '
    cases = {
        # 20,000 arrays deep: msgspec alone would recurse until Python's stack limit (a plain-text 500).
        "deep": (
            envelope + b"[" * 20000 + b"]" * 20000 + b"}",
            "arrays and objects are nested more than 64 deep",
        ),
        "not UTF-8": (envelope + b'"caf\xe9"}', "the document is not UTF-8"),
        "NUL in the id": (b'{"specversion": "1.0", "id": "a\\u0000", "source": "/s", "type": "t"}', "U+0000"),
    }
    async with (
        mesh(make_settings(), tmp_path, broker_manifest()) as (ingress, _),
        httpx.AsyncClient() as client,
    ):
        for name, (body, problem) in cases.items():
            response = await client.post(ingress, headers=structured, content=body)
            assert response.status_code == 400, name
            answer = response.json()
            assert (answer["status_code"], answer["error"]) == (400, "invalid_event"), name
            assert problem in answer["detail"], (name, answer["detail"])


async def test_unknown_broker_or_namespace_is_404(make_settings, tmp_path) -> None:
    headers, body = to_binary(event())
    async with (
        mesh(make_settings(), tmp_path, broker_manifest()) as (ingress, _),
        httpx.AsyncClient() as client,
    ):
        base = ingress.rsplit("/", 2)[0]
        for path in ("/victor/other", "/elsewhere/default"):
            response = await client.post(base + path, headers=headers, content=body)
            assert response.status_code == 404
            assert response.json()["error"] == "unknown_broker"
            assert response.json()["detail"].endswith("send events to /victor/default")


async def test_other_methods_are_405(make_settings, tmp_path) -> None:
    async with (
        mesh(make_settings(), tmp_path, broker_manifest()) as (ingress, _),
        httpx.AsyncClient() as client,
    ):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            response = await client.request(method, ingress)
            assert response.status_code == 405, method
            assert response.json()["error"] == "method_not_allowed"


async def test_broker_serves_health_and_metrics(make_settings, tmp_path) -> None:
    async with (
        mesh(make_settings(), tmp_path, broker_manifest()) as (ingress, _),
        httpx.AsyncClient() as client,
    ):
        base = ingress.rsplit("/", 2)[0]
        assert (await client.get(base + "/health/ready")).json() == {"status": "ready"}
        headers, body = to_binary(event())
        assert (await client.post(ingress, headers=headers, content=body)).status_code == 202
        exposition = (await client.get(base + "/metrics")).text
        assert 'victor_broker_events_total{broker="/victor/default",outcome="accepted"}' in exposition


async def test_an_event_over_the_size_limit_is_413(make_settings, tmp_path) -> None:
    async with (
        mesh(make_settings(VICTOR_MAX_EVENT_BYTES="1KB"), tmp_path, broker_manifest()) as (
            ingress,
            _,
        ),
        httpx.AsyncClient() as client,
    ):
        headers, _ = to_binary(event())
        response = await client.post(ingress, headers=headers, content=b'{"x":"' + b"a" * 2000 + b'"}')
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"
