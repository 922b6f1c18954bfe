"""/metrics after real traffic: the documented names with the right labels and counts."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from eventing.dev.embedded import free_port
from functions.health.app import create
from tests.conftest import Services
from tests.support.foundation import MakeSettings, clean_env, serving, unique, victor_serve
from tests.support.servers import running

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PING = {
    "ce-specversion": "1.0",
    "ce-source": "/test/metrics",
    "ce-type": "dev.knative.sources.ping",
}


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


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


async def test_victor_serve_also_exposes_metrics_on_the_separate_port(
    services: Services, tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = clean_env(**services.env(), VICTOR_METRICS_PORT=str(metrics_port), WORKSPACE_DIR=str(tmp_path))
    async with (
        serving(victor_serve(), env, tmp_path / "serve.log") as served,
        httpx.AsyncClient(timeout=30) as client,
    ):
        assert (await client.get(f"{served.url}/health/live")).status_code == 200
        main_port = (await client.get(f"{served.url}/metrics")).text
        separate = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    live = {"function": "health", "method": "GET", "route": "/health/live", "status": "200"}
    on_main = value(parse(main_port), "victor_api_requests_total", **live)
    assert on_main >= 2  # the start-up wait's probes and the one above
    assert value(parse(separate), "victor_api_requests_total", **live) == on_main
