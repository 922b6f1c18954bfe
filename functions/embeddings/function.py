"""The embeddings function, declared once: its events, its route table, its lifecycle."""

from __future__ import annotations

from typing import Any

from common.function import FunctionSpec, Route
from common.openai_api import ModelList, openai_refusal
from common.runtime import Runtime
from eventing.schemas.chat import CONVERSATION_ID
from eventing.schemas.embeddings import (
    EMBEDDINGS_REQUESTED,
    INDEX_REQUESTED,
    SEARCH_REQUESTED,
    IndexCompleted,
    IndexJob,
    IndexRequest,
    SearchCompleted,
    SearchRequested,
)
from functions.embeddings import jobs
from functions.embeddings.handlers import (
    EmbeddingRequest,
    EmbeddingResponse,
    create_embeddings,
    get_index_job,
    index_files,
    list_models,
    on_embeddings_requested,
    on_index_requested,
    on_search_requested,
    search_collection,
)
from functions.embeddings.service import EmbeddingsState, start_service
from functions.embeddings.settings import EmbeddingSettings, load_embedding_settings

ROUTES = [
    Route(
        "POST",
        "/v1/embeddings",
        create_embeddings,
        EmbeddingRequest,
        EmbeddingResponse,
        summary="Embed texts (OpenAI-compatible)",
        refusals=openai_refusal,
    ),
    Route(
        "GET",
        "/v1/models",
        list_models,
        returns=ModelList,
        summary="OpenAI-compatible model list: the served model by its short id",
        refusals=openai_refusal,
    ),
    Route(
        "POST",
        "/v1/index",
        index_files,
        IndexRequest,
        IndexCompleted,
        accepted=IndexJob,
        summary="Index files of the workspace or inline documents",
        description=(
            "With `progress`: an NDJSON stream of progress lines (each with its `job_id`), then the result."
            " With `background` (or `Prefer: respond-async`): 202 with an IndexJob at once, and its"
            " Location to poll."
        ),
    ),
    Route(
        "GET",
        "/v1/index/jobs/{job_id}",
        get_index_job,
        returns=IndexJob,
        summary="An index job's state, progress and result (kept 24 hours)",
    ),
    Route(
        "POST",
        "/v1/search",
        search_collection,
        SearchRequested,
        SearchCompleted,
        summary="Search a collection (vector or hybrid)",
    ),
]


def build_function(embedding: EmbeddingSettings | None = None) -> FunctionSpec:
    """The function, with its settings read from the environment at start unless given."""

    async def start(runtime: Runtime[EmbeddingsState]) -> None:
        service = await start_service(runtime, embedding or load_embedding_settings())
        await jobs.resume_interrupted(runtime, service)

    async def stop(runtime: Runtime[Any]) -> None:
        service = runtime.state.service
        if service is None:
            return
        await jobs.drain(runtime, service.settings.drain_seconds)  # index jobs still use the model
        runtime.state.service = None
        await service.batcher.close()

    return FunctionSpec(
        name="embeddings",
        event_handlers={
            EMBEDDINGS_REQUESTED: on_embeddings_requested,
            INDEX_REQUESTED: on_index_requested,
            SEARCH_REQUESTED: on_search_requested,
        },
        routes=ROUTES,
        requires=("lancedb",),
        reports=("lancedb", "redis", "postgres"),
        propagates=(CONVERSATION_ID,),
        state=EmbeddingsState,
        start=start,
        stop=stop,
        start_in_background=True,
    )


FUNCTION = build_function()
