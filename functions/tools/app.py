"""The tools function: its HTTP routes, its spec and its Litestar app.

Routes (besides the shared ones):

- `GET /v1/tools` — the catalog: each tool's name, description, JSON Schema and flags.
- `POST /v1/tools/{name}` — run one call; the body is the arguments object.
  Unknown tool 404, invalid arguments 422 naming the field; a call that runs
  and fails answers 200 with `is_error: true`, a message and an `error` code.
- `POST /v1/tools/batch` — `{"calls": [{"id", "name", "arguments"}]}`, every
  call's result in order (bounded parallelism, ordered writes).
- `POST /v1/tools/select` — `{"query", "k", "strategy"}`, ranked tools with scores.
- `/mcp` — the same catalog over MCP streamable HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from litestar import Litestar, Request, get, post
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    ServiceUnavailableException,
    ValidationException,
)

from common.app import create_app
from common.function import FunctionSpec, Runtime
from common.settings import Settings
from eventing.schemas.tools import TOOLS_REQUESTED
from functions.tools import api
from functions.tools.execution import ToolOutcome
from functions.tools.handlers import on_tools_requested
from functions.tools.mcp_server import mcp_endpoint, start_mcp, stop_mcp
from functions.tools.selection import Selection
from functions.tools.service import STATE_KEY, ToolsService
from functions.tools.settings import ToolsSettings

T = TypeVar("T")


def _runtime(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _answer(result: Awaitable[T]) -> T:
    """The API's result, or its refusal as the matching Litestar exception (JSON error body)."""
    try:
        return await result
    except api.RequestRejected as exc:
        if exc.status == 404:
            raise NotFoundException(detail=exc.message) from None
        if exc.status == 503:
            raise ServiceUnavailableException(detail=exc.message) from None
        if exc.status == 422:
            raise ValidationException(detail=exc.message, status_code=422) from None
        raise HTTPException(detail=exc.message, status_code=exc.status) from None


@get("/v1/tools")
async def list_tools(request: Request[Any, Any, Any]) -> api.Catalog:
    """Every tool with its JSON Schema and flags, and the catalog version."""
    return api.catalog(_runtime(request))


@post("/v1/tools/batch", status_code=200)
async def run_batch(request: Request[Any, Any, Any]) -> api.BatchResponse:
    """Run many calls; each result carries is_error and a message instead of failing the batch."""
    return await _answer(api.run_many(_runtime(request), await request.body()))


@post("/v1/tools/select", status_code=200)
async def select_tools(request: Request[Any, Any, Any]) -> Selection:
    """The k tools most relevant to the query, best first, with scores."""
    return await _answer(api.select(_runtime(request), await request.body()))


@post("/v1/tools/{name:str}", status_code=200)
async def run_tool(name: str, request: Request[Any, Any, Any]) -> ToolOutcome:
    """Run one call; the body is the arguments object."""
    return await _answer(api.run_one(_runtime(request), name, await request.body()))


def build_spec(tools_settings: ToolsSettings | None = None) -> FunctionSpec:
    """The function's spec; `tools_settings` default to the environment's (tests pass their own)."""

    async def start(runtime: Runtime) -> None:
        service = ToolsService.build(runtime, tools_settings)
        runtime.state[STATE_KEY] = service
        await start_mcp(runtime, service)

    return FunctionSpec(
        name="tools",
        event_handlers={TOOLS_REQUESTED: on_tools_requested},
        routes=[list_tools, run_batch, select_tools, run_tool, mcp_endpoint],
        reports=("redis", "postgres"),
        start=start,
        stop=stop_mcp,
    )


SPEC = build_spec()


def create(settings: Settings | None = None, tools_settings: ToolsSettings | None = None) -> Litestar:
    return create_app(build_spec(tools_settings) if tools_settings else SPEC, settings)
