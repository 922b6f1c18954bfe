"""/metrics after real traffic: the documented names with the right labels and counts."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from functions.health.app import create
from tests.support.foundation import MakeSettings, unique
from tests.support.servers import running

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PING = {
    "ce-specversion": "1.0",
    "ce-source": "/test/metrics",
    "ce-type": "dev.knative.sources.ping",
}


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_requests_errors_durations_events_and_cache_ratio_are_exposed(
    make_settings: MakeSettings,
) -> None:
    app = create(make_settings())
    async with running(app) as url, httpx.AsyncClient(base_url=url) as client:
        before = await scrape(client)
        ping_id = unique("metrics")
        for _ in range(3):
            assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/no/such/route")).status_code == 404
        assert (await client.get("/v1/status")).status_code == 200
        ping = await client.post("/", headers={**PING, "ce-id": ping_id})
        assert ping.status_code == 200
        assert (await client.post("/", headers={**PING, "ce-id": ping_id})).status_code == 200
        bad = await client.post("/", headers={"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/s"})
        assert bad.status_code == 400
        unsupported = await client.post("/", headers={**PING, "ce-id": "u", "ce-type": "com.example.other"})
        assert unsupported.status_code == 400
        # A cache the function uses: one miss, then a hit, on the real Redis.
        cache = app.state.runtime.cache
        key = cache.key("metrics-test", str(id(app)))
        assert await cache.get(key, cache="metrics_test") is None
        await cache.set(key, b"1", ttl=60)
        assert await cache.get(key, cache="metrics_test") == b"1"
        after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    live = {"function": "health", "method": "GET", "route": "/health/live"}
    assert delta("victor_api_requests_total", **live, status="200") == 3
    assert delta("victor_api_duration_seconds_count", **live) == 3
    assert delta("victor_api_duration_seconds_bucket", **live, le="+Inf") == 3
    assert (
        delta("victor_api_requests_total", function="health", method="GET", route="unmatched", status="404")
        == 1
    )
    assert delta("victor_api_errors_total", function="health", route="unmatched", status="404") == 1
    assert (
        delta("victor_api_requests_total", function="health", method="GET", route="/v1/status", status="200")
        == 1
    )
    assert delta("victor_api_requests_total", function="health", method="POST", route="/", status="200") == 2
    assert delta("victor_api_requests_total", function="health", method="POST", route="/", status="400") == 2
    assert delta("victor_api_errors_total", function="health", route="/", status="400") == 2
    assert delta("victor_api_errors_total", function="health", route="/health/live", status="200") == 0
    ping_type = "dev.knative.sources.ping"
    assert delta("victor_events_total", function="health", type=ping_type, outcome="replied") == 1
    assert delta("victor_events_total", function="health", type=ping_type, outcome="duplicate") == 1
    assert delta("victor_events_total", function="health", type="invalid", outcome="rejected") == 1
    assert delta("victor_events_total", function="health", type="unsupported", outcome="rejected") == 1
    assert value(after, "victor_cache_hit_ratio", cache="metrics_test") == 0.5
    assert value(after, "victor_dependency_up", function="health", dependency="redis") == 1
