"""The tools function under functions-framework, over the same API functions as its Litestar app.

    functions-framework --asgi --target handle --source functions/tools/main.py --port 8080

Serves the shared routes, `POST /` (CloudEvents), `GET /v1/tools`,
`POST /v1/tools/batch`, `POST /v1/tools/select` and `POST /v1/tools/{name}`.
MCP (`/mcp`) needs the session manager's lifespan, which functions-framework
does not run: use `victor serve tools` for MCP clients.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request

from common.framework_target import RouteHandler, entry_settings, json_answer, make_target
from common.function import Answer, Runtime, error_answer
from functions.tools import api
from functions.tools.app import SPEC


async def _answered(result: Awaitable[Any]) -> Answer:
    try:
        return json_answer(200, await result)
    except api.RequestRejected as exc:
        return error_answer(exc.status, exc.code, exc.message)


async def list_tools(request: Request, runtime: Runtime) -> Answer:
    return json_answer(200, api.catalog(runtime))


async def run_batch(request: Request, runtime: Runtime) -> Answer:
    return await _answered(api.run_many(runtime, await request.body()))


async def select_tools(request: Request, runtime: Runtime) -> Answer:
    return await _answered(api.select(runtime, await request.body()))


async def run_tool(request: Request, runtime: Runtime) -> Answer:
    return await _answered(api.run_one(runtime, request.path_params["name"], await request.body()))


# Matched in order: the fixed paths come before the {name} template.
ROUTES: dict[tuple[str, str], RouteHandler] = {
    ("GET", "/v1/tools"): list_tools,
    ("POST", "/v1/tools/batch"): run_batch,
    ("POST", "/v1/tools/select"): select_tools,
    ("POST", "/v1/tools/{name}"): run_tool,
}


settings = entry_settings()

handle = make_target(SPEC, settings, extra_routes=ROUTES)
