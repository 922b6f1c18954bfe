"""The tools HTTP API as framework-free functions over request bodies.

The Litestar app (`app.py`) and the functions-framework target (`main.py`)
both adapt these, so the two serving modes answer identically. A request
that cannot be served raises `RequestRejected` with the HTTP status.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec

from common.function import Runtime
from functions.tools.execution import CallRequest, ToolOutcome
from functions.tools.registry import InvalidArguments, ToolInfo, UnknownTool
from functions.tools.selection import Selection, SelectionUnavailable, SelectRequest
from functions.tools.service import service_of

T = TypeVar("T")
MAX_BATCH = 100


class RequestRejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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
    """The JSON body as `model`; 422 naming the field when it does not fit or is not JSON."""
    try:
        return msgspec.json.decode(body or b"{}", type=model)
    except msgspec.ValidationError as exc:
        raise RequestRejected(422, "invalid_request", f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RequestRejected(422, "invalid_request", f"the request body is not valid JSON: {exc}") from None


def catalog(runtime: Runtime) -> Catalog:
    registry = service_of(runtime).registry
    return Catalog(catalog_version=registry.version, tools=registry.infos())


async def run_one(runtime: Runtime, name: str, body: bytes) -> ToolOutcome:
    """404 for an unknown tool, 422 naming the field for invalid arguments; else the outcome."""
    executor = service_of(runtime).executor
    try:
        call = executor.prepare(name, body or b"{}")
    except UnknownTool as exc:
        raise RequestRejected(404, "not_found", str(exc)) from None
    except InvalidArguments as exc:
        raise RequestRejected(422, "invalid_arguments", str(exc)) from None
    return await executor.execute(call)


async def run_many(runtime: Runtime, body: bytes) -> BatchResponse:
    batch = decode_body(body, BatchRequest)
    calls = [CallRequest(call.name, call.arguments, call.id) for call in batch.calls]
    return BatchResponse(results=await service_of(runtime).executor.run_batch(calls))


async def select(runtime: Runtime, body: bytes) -> Selection:
    request = decode_body(body, SelectRequest)
    try:
        return await service_of(runtime).selector.select(request)
    except SelectionUnavailable as exc:
        raise RequestRejected(503, "unavailable", str(exc)) from None
