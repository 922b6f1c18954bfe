"""The health function over real HTTP with real PostgreSQL and Redis."""

from __future__ import annotations

import httpx

from common.cloudevents import from_http
from functions.health.app import create
from tests.support.servers import running

PING_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "ping-1",
    "ce-source": "/apis/v1/namespaces/default/pingsources/health",
    "ce-type": "dev.knative.sources.ping",
    "content-type": "application/json",
}


async def test_probes_answer_when_dependencies_are_up(make_settings) -> None:
    async with running(create(make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health/live")).json() == {"status": "alive"}
        assert (await client.get("/health/startup")).status_code == 200
        assert (await client.get("/health/ready")).json() == {"status": "ready"}
        report = (await client.get("/health")).json()
        assert report["status"] == "ok"
        assert [(d["name"], d["state"]) for d in report["dependencies"]] == [
            ("redis", "up"),
            ("postgres", "up"),
        ]


async def test_ping_is_answered_with_one_health_reported_event(make_settings) -> None:
    async with running(create(make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/", headers=PING_HEADERS, content=b'{"message":"tick"}')
        assert response.status_code == 200
        reply = from_http(response.headers, response.content, max_bytes=1 << 20)
        assert reply.type == "ai.victor.health.reported"
        assert reply.subject == "ping-1"
        assert reply.json()["status"] == "ok"
        again = await client.post("/", headers=PING_HEADERS, content=b'{"message":"tick"}')
        assert again.status_code == 200
        assert from_http(again.headers, again.content, max_bytes=1 << 20).id == reply.id
