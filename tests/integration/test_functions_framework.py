"""The health function under functions-framework behaves as its Litestar app does."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.app import create_app
from common.cloudevents import from_http
from common.function import Call, Route
from common.runtime import Runtime
from common.settings import load_settings
from eventing.schemas.health import HEALTH_REPORTED, PING
from functions.health.function import FUNCTION as SPEC
from tests.support.foundation import ROOT, FakeFunction, clean_env, functions_framework, serving, unique
from tests.support.servers import running, running_target

KEY = "ff-api-key-0123456789"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def ping(**extra: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": unique("ff"),
        "ce-source": "/test/functions-framework",
        "ce-type": PING,
        **extra,
    }


@pytest.fixture(scope="module")
async def both(services: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, str]]:
    """The health function under functions-framework and under Litestar, with the same settings."""
    root = tmp_path_factory.mktemp("functions-framework")
    peer = FakeFunction()
    async with AsyncExitStack() as stack:
        peer_url = await stack.enter_async_context(running(peer.app()))
        env = services.env(
            WORKSPACE_DIR=str(root),
            VICTOR_API_KEY=KEY,
            VICTOR_TOOLS_URL=peer_url,
            VICTOR_MAX_EVENT_BYTES="1KB",
        )
        served = await stack.enter_async_context(
            serving(functions_framework(), clean_env(**env), root / "ff.log")
        )
        litestar = await stack.enter_async_context(running(create_app(SPEC, load_settings(env))))
        yield {"functions-framework": served.url, "litestar": litestar, "peer": peer_url}


def shape(response: httpx.Response) -> tuple[Any, ...]:
    """What must be equal between the two serving modes (not timings or ids)."""
    media = response.headers.get("content-type", "").split(";")[0]
    if media == "application/json":
        body = response.json()
        if "status_code" in body:
            allow = response.headers.get("allow")
            return response.status_code, media, body["status_code"], body["error"], body["detail"], allow
        if "components" in body:
            return (
                response.status_code,
                media,
                body["status"],
                [(c["name"], c["state"]) for c in body["components"]],
            )
        if "dependencies" in body:
            return (
                response.status_code,
                media,
                body["status"],
                [(d["name"], d["state"]) for d in body["dependencies"]],
            )
        return response.status_code, media, body
    if "ce-type" in response.headers:
        return response.status_code, media, response.headers["ce-type"], response.headers["ce-source"]
    return response.status_code, media, response.content


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/health/live", {}),
    ("GET", "/health/ready", {}),
    ("GET", "/health/startup", {}),
    ("GET", "/health", {}),
    ("GET", "/v1/status", {}),
    ("GET", "/v1/status", {"headers": {"authorization": "Bearer wrong"}}),
    ("GET", "/v1/status", {"headers": {"authorization": f"Bearer {KEY}"}}),
    ("GET", "/v1/status", {"headers": {"x-api-key": KEY}}),
    ("GET", "/nowhere", {}),
    ("DELETE", "/health/live", {}),
    ("GET", "/", {}),
    ("POST", "/", {"headers": ping()}),
    ("POST", "/", {"headers": ping(**{"ce-type": "com.example.other"})}),
    ("POST", "/", {"headers": {"content-type": "application/json"}, "content": b"{}"}),
    ("POST", "/", {"headers": {"content-type": "application/cloudevents+json"}, "content": b"[1]"}),
    ("POST", "/", {"headers": {"content-type": "application/cloudevents-batch+json"}, "content": b"[]"}),
    ("POST", "/", {"headers": ping(), "content": b"x" * 1025}),
]


@pytest.mark.parametrize(
    ("method", "path", "options"), REQUESTS, ids=[f"{m} {p} {i}" for i, (m, p, _) in enumerate(REQUESTS)]
)
async def test_each_answer_matches_the_litestar_app(
    both: dict[str, str], method: str, path: str, options: dict[str, Any]
) -> None:
    answers = {}
    for mode in ("litestar", "functions-framework"):
        async with httpx.AsyncClient(base_url=both[mode], timeout=30) as client:
            answers[mode] = await client.request(method, path, **options)
    assert shape(answers["functions-framework"]) == shape(answers["litestar"])
    assert answers["functions-framework"].status_code < 500


async def test_a_ping_gets_one_cloudevent_and_a_redelivery_the_same_reply(both: dict[str, str]) -> None:
    headers = ping(**{"ce-traceparent": TRACEPARENT})
    async with httpx.AsyncClient(base_url=both["functions-framework"], timeout=30) as client:
        first = await client.post("/", headers=headers, content=b'{"message": "tick"}')
        again = await client.post("/", headers=headers, content=b'{"message": "tick"}')
    assert first.status_code == 200
    reply = from_http(first.headers, first.content, max_bytes=1 << 20)
    assert (reply.type, reply.source, reply.subject) == (HEALTH_REPORTED, "/victor/health", headers["ce-id"])
    assert reply.extensions["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
    components = {c["name"]: c["state"] for c in reply.json()["components"]}
    assert components == {"redis": "up", "postgres": "up", "tools": "up"}
    assert from_http(again.headers, again.content, max_bytes=1 << 20).id == reply.id


async def test_metrics_count_functions_framework_traffic_by_route(both: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=both["functions-framework"], timeout=30) as client:
        for _ in range(2):
            await client.get("/health/live")
        await client.get("/does/not/exist")
        text = (await client.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    live = (("function", "health"), ("method", "GET"), ("route", "/health/live"), ("status", "200"))
    assert samples[("victor_api_requests_total", live)] >= 2
    missing = (("function", "health"), ("route", "unmatched"), ("status", "404"))
    assert samples[("victor_api_errors_total", missing)] >= 1
    assert any(name == "victor_api_duration_seconds_count" for name, _ in samples)
    assert any(name == "victor_events_total" for name, _ in samples)


async def test_a_function_whose_start_fails_still_answers_probes(services: Any, tmp_path: Path) -> None:
    async def broken_start(runtime: Runtime[Any]) -> None:
        raise RuntimeError("model file is missing")

    spec = dataclasses.replace(SPEC, start=broken_start)
    settings = load_settings(services.env(WORKSPACE_DIR=str(tmp_path)))
    # functions-framework's own Starlette app around the target, as `--asgi --target` builds it.
    async with running_target(spec, settings) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health/live")).status_code == 200
        startup = await client.get("/health/startup")
        assert (startup.status_code, startup.json()) == (
            503,
            {"status": "failed", "error": "RuntimeError: model file is missing"},
        )
        ready = await client.get("/health/ready")
        assert (ready.status_code, ready.json()) == (
            503,
            {"status": "not ready", "reason": "start failed; see /health/startup"},
        )


def test_a_bad_setting_stops_functions_framework_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*functions_framework(), "--port", "1"],
        cwd=ROOT,
        env=clean_env(VICTOR_PROFILE="staging"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "victor: VICTOR_PROFILE: expected one of development, production; got 'staging'"
    ]


async def test_own_routes_match_path_templates(services: Any, tmp_path: Path) -> None:
    async def item(call: Call[None], runtime: Runtime[Any]) -> dict[str, str]:
        return {"method": call.method, **call.params}

    routes = [
        Route("GET", "/v1/items/{item_id}", item),
        Route("post", "/v1/items/{item_id}/parts/{part}", item),
    ]
    spec = dataclasses.replace(SPEC, routes=routes)
    settings = load_settings(services.env(WORKSPACE_DIR=str(tmp_path)))
    async with running_target(spec, settings) as url, httpx.AsyncClient(base_url=url) as client:
        found = await client.get("/v1/items/a%20b")
        assert (found.status_code, found.json()) == (200, {"method": "GET", "item_id": "a b"})
        nested = await client.post("/v1/items/7/parts/wheel")
        assert nested.json() == {"method": "POST", "item_id": "7", "part": "wheel"}
        wrong = await client.delete("/v1/items/7")
        assert (wrong.status_code, wrong.headers["allow"], wrong.json()["error"]) == (
            405,
            "GET",
            "method_not_allowed",
        )
        assert (await client.get("/v1/items/7/extra")).status_code == 404
        assert (await client.get("/v1/items/")).status_code == 404
        text = (await client.get("/metrics")).text
    assert 'route="/v1/items/{item_id}",status="200"' in text


async def test_own_routes_get_the_body_limit_of_the_litestar_app(services: Any, tmp_path: Path) -> None:
    async def echo(call: Call[bytes], runtime: Runtime[Any]) -> dict[str, int]:
        return {"bytes": len(call.body)}

    env = services.env(WORKSPACE_DIR=str(tmp_path), VICTOR_MAX_EVENT_BYTES="1KB")
    spec = dataclasses.replace(SPEC, routes=[Route("POST", "/v1/echo", echo, bytes)])
    async with running_target(spec, load_settings(env)) as url, httpx.AsyncClient(base_url=url) as client:
        within = await client.post("/v1/echo", content=b"x" * 1024)
        assert (within.status_code, within.json()) == (200, {"bytes": 1024})
        over = await client.post("/v1/echo", content=b"x" * 1025)
        assert over.status_code == 413
        assert over.json() == {
            "status_code": 413,
            "error": "too_large",
            "detail": "the request body is over the limit of 1024 bytes (VICTOR_MAX_EVENT_BYTES)",
        }
