"""The health function over real HTTP with real PostgreSQL and Redis."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx

from common.app import create_app
from common.cloudevents import from_http
from common.settings import load_settings
from eventing.dev.embedded import free_port
from functions.health.app import create
from functions.health.function import FUNCTION as SPEC
from tests.conftest import Services
from tests.support.foundation import FakeFunction, MakeSettings
from tests.support.servers import running

PING_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "ping-1",
    "ce-source": "/apis/v1/namespaces/default/pingsources/health",
    "ce-type": "dev.knative.sources.ping",
    "content-type": "application/json",
}


async def test_probes_answer_when_dependencies_are_up(make_settings: MakeSettings) -> None:
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


async def test_ping_is_answered_with_one_health_reported_event(make_settings: MakeSettings) -> None:
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


async def test_health_reports_each_dependency_with_state_and_latency(make_settings: MakeSettings) -> None:
    async with running(create(make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/health")
        assert response.status_code == 200
        report = response.json()
        assert {key: report[key] for key in ("function", "status", "ready", "started")} == {
            "function": "health",
            "status": "ok",
            "ready": True,
            "started": True,
        }
        for dependency in report["dependencies"]:
            assert dependency["state"] == "up"
            assert dependency["required"] is False
            assert dependency["error"] is None
            assert isinstance(dependency["latency_ms"], float) and dependency["latency_ms"] >= 0


async def test_a_missing_required_dependency_makes_readiness_503_but_liveness_200(
    make_settings: MakeSettings,
) -> None:
    # The same function, but declaring that its readiness needs Redis and PostgreSQL.
    spec = dataclasses.replace(SPEC, requires=("redis", "postgres"))
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(REDIS_URL=nobody)
    async with running(create_app(spec, settings)) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/startup")).status_code == 200
        ready = await client.get("/health/ready")
        assert (ready.status_code, ready.json()) == (
            503,
            {"status": "not ready", "reason": "waiting for redis"},
        )
        health = await client.get("/health")
        assert health.status_code == 503
        states = {d["name"]: (d["state"], d["required"]) for d in health.json()["dependencies"]}
        assert states == {"redis": ("down", True), "postgres": ("up", True)}
        assert health.json()["status"] == "down"


async def test_an_unconfigured_required_dependency_is_reported_and_blocks_readiness(
    services: Services, tmp_path: Path
) -> None:
    spec = dataclasses.replace(SPEC, requires=("postgres",))
    settings = load_settings({"REDIS_URL": services.redis_url, "WORKSPACE_DIR": str(tmp_path)})
    async with running(create_app(spec, settings)) as url, httpx.AsyncClient(base_url=url) as client:
        ready = await client.get("/health/ready")
        assert (ready.status_code, ready.json()["reason"]) == (503, "waiting for postgres")
        states = {d["name"]: d["state"] for d in (await client.get("/health")).json()["dependencies"]}
        assert states == {"postgres": "unconfigured", "redis": "up"}
        # Not ready, yet still answering everything else.
        assert (await client.get("/v1/status")).status_code == 200


async def test_v1_status_reports_dependencies_and_other_functions(make_settings: MakeSettings) -> None:
    up, down = FakeFunction(status=200), FakeFunction(status=503)
    async with running(up.app()) as up_url, running(down.app()) as down_url:
        settings = make_settings(
            VICTOR_TOOLS_URL=up_url,
            VICTOR_CHAT_URL=down_url,
            VICTOR_EMBEDDINGS_URL=f"http://127.0.0.1:{free_port()}",
            VICTOR_HEALTH_URL="http://127.0.0.1:1",  # itself: never checked
        )
        async with running(create(settings)) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/v1/status")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "degraded"
    found = {(c["name"], c["kind"]): (c["state"], c["error"]) for c in report["components"]}
    assert found == {
        ("redis", "dependency"): ("up", None),
        ("postgres", "dependency"): ("up", None),
        ("chat", "function"): ("down", "/health/ready answered 503"),
        ("tools", "function"): ("up", None),
        ("embeddings", "function"): ("down", "ConnectError"),
    }
    assert all(c["latency_ms"] >= 0 for c in report["components"])


async def test_openapi_schema_lists_the_routes(make_settings: MakeSettings) -> None:
    async with running(create(make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
        schema = (await client.get("/schema/openapi.json")).json()
    assert {"/v1/status", "/health", "/"} <= set(schema["paths"])


async def test_unknown_routes_and_methods_get_json_errors(make_settings: MakeSettings) -> None:
    async with running(create(make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
        missing = await client.get("/v2/nothing")
        assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        wrong = await client.delete("/health/live")
        assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
        get_root = await client.get("/")
        assert (get_root.status_code, get_root.json()["error"]) == (405, "method_not_allowed")
