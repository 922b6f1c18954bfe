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

from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Litestar, Request, get, post
from litestar.exceptions import NotFoundException, ServiceUnavailableException, ValidationException

from common.app import create_app
from common.function import FunctionSpec, Runtime
from common.settings import Settings
from eventing.events import TOOLS_REQUESTED
from functions.tools.execution import CallRequest, ToolOutcome
from functions.tools.handlers import on_tools_requested
from functions.tools.mcp_server import mcp_endpoint, start_mcp, stop_mcp
from functions.tools.registry import InvalidArguments, ToolInfo, UnknownTool
from functions.tools.selection import Selection, SelectionUnavailable, SelectRequest
from functions.tools.service import STATE_KEY, ToolsService, service_of
from functions.tools.settings import ToolsSettings

T = TypeVar("T")
MAX_BATCH = 100


class Catalog(msgspec.Struct, kw_only=True):
    catalog_version: str
    tools: list[ToolInfo]


class BatchCall(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    id: str | None = None


class BatchRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    calls: Annotated[list[BatchCall], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class BatchResponse(msgspec.Struct, kw_only=True):
    results: list[ToolOutcome]


def decode_body(body: bytes, model: type[T]) -> T:
    """The JSON body as `model`; 422 naming the field, 400 when it is not JSON."""
    try:
        return msgspec.json.decode(body or b"{}", type=model)
    except msgspec.ValidationError as exc:
        raise ValidationException(detail=f"invalid request body: {exc}", status_code=422) from None
    except msgspec.DecodeError as exc:
        raise ValidationException(detail=f"the request body is not valid JSON: {exc}") from None


@get("/v1/tools")
async def list_tools(request: Request[Any, Any, Any]) -> Catalog:
    """Every tool with its JSON Schema and flags, and the catalog version."""
    service = service_of(request.app.state.runtime)
    return Catalog(catalog_version=service.registry.version, tools=service.registry.infos())


@post("/v1/tools/batch", status_code=200)
async def run_batch(request: Request[Any, Any, Any]) -> BatchResponse:
    """Run many calls; each result carries is_error and a message instead of failing the batch."""
    batch = decode_body(await request.body(), BatchRequest)
    calls = [CallRequest(call.name, call.arguments, call.id) for call in batch.calls]
    return BatchResponse(results=await service_of(request.app.state.runtime).executor.run_batch(calls))


@post("/v1/tools/select", status_code=200)
async def select_tools(request: Request[Any, Any, Any]) -> Selection:
    """The k tools most relevant to the query, best first, with scores."""
    selection = decode_body(await request.body(), SelectRequest)
    try:
        return await service_of(request.app.state.runtime).selector.select(selection)
    except SelectionUnavailable as exc:
        raise ServiceUnavailableException(detail=str(exc)) from None


@post("/v1/tools/{name:str}", status_code=200)
async def run_tool(name: str, request: Request[Any, Any, Any]) -> ToolOutcome:
    """Run one call; the body is the arguments object."""
    executor = service_of(request.app.state.runtime).executor
    try:
        call = executor.prepare(name, await request.body() or b"{}")
    except UnknownTool as exc:
        raise NotFoundException(detail=str(exc)) from None
    except InvalidArguments as exc:
        raise ValidationException(detail=str(exc), status_code=422) from None
    return await executor.execute(call)


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
