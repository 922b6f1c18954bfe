"""Error bodies of the shared app name the problem, whatever refusal a route raises."""

from __future__ import annotations

from typing import Any

import httpx

from common.answers import Refusal
from common.app import create_app
from common.function import Call, FunctionSpec, Route
from common.runtime import Runtime
from tests.support.servers import running


async def conflict(call: Call[None], runtime: Runtime[Any]) -> None:
    raise Refusal(409, "collection 'default' holds another model")


async def refused(call: Call[None], runtime: Runtime[Any]) -> None:
    raise Refusal(400, "input is empty")


async def test_an_exception_raised_with_only_a_status_gets_that_status_as_its_code(make_settings) -> None:
    spec = FunctionSpec(
        name="errors", routes=[Route("GET", "/v1/conflict", conflict), Route("GET", "/v1/refused", refused)]
    )
    async with running(create_app(spec, make_settings())) as url, httpx.AsyncClient(base_url=url) as client:
        answer = await client.get("/v1/conflict")
        assert answer.status_code == 409
        assert answer.json() == {
            "status_code": 409,
            "error": "conflict",
            "detail": "collection 'default' holds another model",
        }
        assert (await client.get("/v1/refused")).json() == {
            "status_code": 400,
            "error": "bad_request",
            "detail": "input is empty",
        }
