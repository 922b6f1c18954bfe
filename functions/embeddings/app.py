"""The embeddings function: its spec (events, routes, lifecycle) and its Litestar app."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from litestar import Litestar, post
from litestar.exceptions import HTTPException

from common.app import create_app
from common.embedding_model import check_model_source
from common.function import EventRejected, FunctionSpec, Runtime, TransientFailure
from common.settings import Settings, get_settings
from eventing.schemas.embeddings import (
    EMBEDDINGS_REQUESTED,
    INDEX_REQUESTED,
    SEARCH_REQUESTED,
    IndexCompleted,
    IndexRequested,
    SearchCompleted,
    SearchRequested,
)
from functions.embeddings import indexer, search
from functions.embeddings.handlers import (
    EmbeddingRequest,
    EmbeddingResponse,
    on_embeddings_requested,
    on_index_requested,
    on_search_requested,
    openai_embeddings,
)
from functions.embeddings.service import STATE_KEY, EmbeddingService, service_of, start_service
from functions.embeddings.settings import EmbeddingSettings, load_embedding_settings

T = TypeVar("T")


async def answered(work: Awaitable[T]) -> T:
    """The result, with the logic's refusals turned into HTTP errors of the same status."""
    try:
        return await work
    except EventRejected as exc:
        raise HTTPException(status_code=exc.status, detail=exc.message) from None
    except TransientFailure as exc:
        raise HTTPException(status_code=503, detail=str(exc), headers={"Retry-After": "5"}) from None


@post("/v1/embeddings", status_code=200, summary="Embed texts (OpenAI-compatible)")
async def create_embeddings(data: EmbeddingRequest, runtime: Runtime) -> EmbeddingResponse:
    """One vector per input, in the OpenAI embeddings response shape."""
    return await answered(openai_embeddings(runtime, data))


async def _index(runtime: Runtime, data: IndexRequested) -> IndexCompleted:
    return await indexer.index(service_of(runtime), runtime.settings.workspace_dir, data)


async def _search(runtime: Runtime, data: SearchRequested) -> SearchCompleted:
    return await search.search(service_of(runtime), data)


@post("/v1/index", status_code=200, summary="Index files of the workspace or inline documents")
async def index_route(data: IndexRequested, runtime: Runtime) -> IndexCompleted:
    return await answered(_index(runtime, data))


@post("/v1/search", status_code=200, summary="Search a collection (vector or hybrid)")
async def search_route(data: SearchRequested, runtime: Runtime) -> SearchCompleted:
    return await answered(_search(runtime, data))


def build_spec(embedding: EmbeddingSettings | None = None) -> FunctionSpec:
    """The function, with its settings read from the environment at start unless given."""

    async def start(runtime: Runtime) -> None:
        await start_service(runtime, embedding or load_embedding_settings())

    async def stop(runtime: Runtime) -> None:
        service = runtime.state.pop(STATE_KEY, None)
        if isinstance(service, EmbeddingService):
            await service.batcher.close()

    return FunctionSpec(
        name="embeddings",
        event_handlers={
            EMBEDDINGS_REQUESTED: on_embeddings_requested,
            INDEX_REQUESTED: on_index_requested,
            SEARCH_REQUESTED: on_search_requested,
        },
        routes=[create_embeddings, index_route, search_route],
        requires=("lancedb",),
        reports=("lancedb", "redis", "postgres"),
        start=start,
        stop=stop,
        uses_lancedb=True,
        start_in_background=True,
    )


SPEC = build_spec()


def create(settings: Settings | None = None, embedding: EmbeddingSettings | None = None) -> Litestar:
    """The app; raises `SettingsError` (one line naming the variable) when the model cannot be found."""
    settings = settings or get_settings()
    embedding = embedding or load_embedding_settings()
    check_model_source(settings.embedding_model)
    return create_app(build_spec(embedding), settings)
