"""Redis goes away while the health function runs, then comes back on the same port."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx

from common.app import create_app
from common.cloudevents import from_http
from eventing.dev.embedded import EmbeddedRedis
from functions.health.function import FUNCTION as SPEC
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
