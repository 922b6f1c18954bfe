"""VICTOR_API_KEY guards the function's own routes; probes, metrics and events stay open."""

from __future__ import annotations

import httpx

from functions.health.app import create
from tests.support.foundation import MakeSettings, unique
from tests.support.servers import running

KEY = "victor-api-key-0123456789"


async def test_v1_status_needs_the_key_when_one_is_set(make_settings: MakeSettings) -> None:
    async with (
        running(create(make_settings(VICTOR_API_KEY=KEY))) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        for headers in (
            {},
            {"authorization": "Bearer wrong"},
            {"x-api-key": KEY[:-1]},
            {"authorization": KEY},
        ):
            refused = await client.get("/v1/status", headers=headers)
            assert refused.status_code == 401
            assert refused.headers["content-type"].startswith("application/json")
            body = refused.json()
            assert (body["status_code"], body["error"]) == (401, "unauthorized")
            assert "API key" in body["detail"]
            assert KEY not in refused.text
        assert (await client.get("/v1/status", headers={"authorization": f"Bearer {KEY}"})).status_code == 200
        assert (await client.get("/v1/status", headers={"x-api-key": KEY})).status_code == 200


async def test_probes_metrics_and_events_need_no_key(make_settings: MakeSettings) -> None:
    async with (
        running(create(make_settings(VICTOR_API_KEY=KEY))) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        for path in ("/health/live", "/health/ready", "/health/startup", "/health", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
        ping = await client.post(
            "/",
            headers={
                "ce-specversion": "1.0",
                "ce-id": unique("api-key"),
                "ce-source": "/test/api-key",
                "ce-type": "dev.knative.sources.ping",
            },
        )
        assert ping.status_code == 200
        assert KEY not in (await client.get("/metrics")).text


async def test_without_a_key_configured_v1_status_is_open(make_settings: MakeSettings) -> None:
    async with running(create(make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/v1/status")).status_code == 200
