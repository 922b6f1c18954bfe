"""The embeddings function under functions-framework, over the same logic as its Litestar app.

    functions-framework --asgi --target handle --source functions/embeddings/main.py --port 8080

A bad setting, or a model that cannot be found, stops the process here, at
import, with one line naming the variable (exit status 2), as `victor serve
embeddings` does. The model itself loads beside the server on the first request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from common.embedding_model import check_model_source
from common.framework_target import entry_settings, json_answer, load_or_exit, make_target
from common.function import Answer, EventRejected, Runtime, TransientFailure, error_answer
from eventing.schemas.embeddings import IndexRequested, SearchRequested
from functions.embeddings import indexer, search
from functions.embeddings.app import build_spec
from functions.embeddings.handlers import EmbeddingRequest, openai_embeddings
from functions.embeddings.service import service_of
from functions.embeddings.settings import load_embedding_settings

T = TypeVar("T")


def json_route(body_type: type[T], work: Callable[[Runtime, T], Awaitable[Any]]) -> Any:
    """A route that decodes the JSON body as `body_type` and answers `work`'s result, or its refusal."""

    async def route(request: Request, runtime: Runtime) -> Answer:
        try:  # the body limit is checked before any own route runs
            body = msgspec.json.decode(await request.body(), type=body_type)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return error_answer(400, "invalid_request", f"request body is not valid: {exc}")
        try:
            return json_answer(200, await work(runtime, body))
        except EventRejected as exc:
            return error_answer(exc.status, exc.code, exc.message)
        except TransientFailure as exc:
            return error_answer(503, "unavailable", str(exc))

    return route


async def _index(runtime: Runtime, body: IndexRequested) -> Any:
    return await indexer.index(service_of(runtime), runtime.settings.workspace_dir, body)


async def _search(runtime: Runtime, body: SearchRequested) -> Any:
    return await search.search(service_of(runtime), body)


settings = entry_settings()
embedding = load_or_exit(load_embedding_settings)
load_or_exit(lambda: check_model_source(settings.embedding_model))

handle = make_target(
    build_spec(embedding),
    settings,
    extra_routes={
        ("POST", "/v1/embeddings"): json_route(EmbeddingRequest, openai_embeddings),
        ("POST", "/v1/index"): json_route(IndexRequested, _index),
        ("POST", "/v1/search"): json_route(SearchRequested, _search),
    },
)
