"""Error bodies of the shared app name the problem, whatever exception a route raises."""

from __future__ import annotations

import httpx
from litestar import get
from litestar.exceptions import HTTPException

from common.app import create_app
from common.function import FunctionSpec
from tests.support.servers import running


@get("/v1/conflict")
async def conflict() -> None:
    raise HTTPException(status_code=409, detail="collection 'default' holds another model")


@get("/v1/refused")
async def refused() -> None:
    raise HTTPException(status_code=400, detail="input is empty")


async def test_an_exception_raised_with_only_a_status_gets_that_status_as_its_code(make_settings) -> None:
    spec = FunctionSpec(name="errors", routes=[conflict, refused])
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
