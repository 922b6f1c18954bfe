"""The embeddings function's handlers: its HTTP routes and its CloudEvent handlers, over the same logic."""

from __future__ import annotations

import base64
from typing import Any, Literal

import msgspec
import numpy as np

from common.answers import Refusal
from common.cloudevents import CloudEvent, decode_data, new_event
from common.function import Call
from common.runtime import Runtime
from eventing.schemas.embeddings import (
    EMBEDDINGS_COMPLETED,
    INDEX_COMPLETED,
    SEARCH_COMPLETED,
    EmbeddingsCompleted,
    EmbeddingsRequested,
    IndexCompleted,
    IndexRequested,
    SearchCompleted,
    SearchRequested,
)
from functions.embeddings import indexer, search
from functions.embeddings.service import EmbeddingService, service_of


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """The body of `POST /v1/embeddings`, as OpenAI's API takes it."""

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class EmbeddingData(msgspec.Struct, kw_only=True):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingsUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(msgspec.Struct, kw_only=True):
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingsUsage
    object: str = "list"


def _reject(message: str, status: int = 400, code: str = "invalid_request") -> Refusal:
    return Refusal(status, message, code)


async def embed_texts(
    service: EmbeddingService, texts: list[str], model: str | None, dimensions: int | None = None
) -> tuple[np.ndarray, int]:
    """Vectors for `texts` and their token count, after checking every limit (400 naming it)."""
    loaded = service.model
    if model is not None and model != loaded.name:
        raise _reject(
            f"model {model!r} is not served here; this function embeds with {loaded.name!r}",
            400,
            "model_not_found",
        )
    if dimensions is not None and dimensions != loaded.dimension:
        raise _reject(f"dimensions must be {loaded.dimension} for model {loaded.name!r}; got {dimensions}")
    if not texts:
        raise _reject("input is empty; give a string or a list of at least one string")
    limit = service.settings.max_inputs
    if len(texts) > limit:
        raise _reject(
            f"input has {len(texts)} items; at most {limit} are allowed (VICTOR_EMBEDDING_MAX_INPUTS)"
        )
    for number, text in enumerate(texts):
        if not text:
            raise _reject(f"input[{number}] is an empty string; every input must hold text")
    tokens = await service.count_tokens(texts)
    window = service.max_input_tokens
    for number, count in enumerate(tokens):
        if count > window:
            raise _reject(
                f"input[{number}] has {count} tokens; at most {window} are allowed "
                f"(the model's window, or VICTOR_EMBEDDING_MAX_INPUT_TOKENS)"
            )
    return await service.embed(texts), sum(tokens)


async def openai_embeddings(runtime: Runtime[Any], request: EmbeddingRequest) -> EmbeddingResponse:
    service = service_of(runtime)
    texts = [request.input] if isinstance(request.input, str) else request.input
    vectors, tokens = await embed_texts(service, texts, request.model, request.dimensions)
    data = []
    for number, vector in enumerate(vectors):
        if request.encoding_format == "base64":
            # OpenAI's base64 is the little-endian float32 bytes of the vector.
            encoded: list[float] | str = base64.b64encode(vector.astype("<f4").tobytes()).decode()
        else:
            encoded = vector.tolist()
        data.append(EmbeddingData(index=number, embedding=encoded))
    return EmbeddingResponse(
        data=data, model=service.model.name, usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens)
    )


# ---------------------------------------------------------------- routes


async def create_embeddings(call: Call[EmbeddingRequest], runtime: Runtime[Any]) -> EmbeddingResponse:
    """One vector per input, in the OpenAI embeddings response shape."""
    return await openai_embeddings(runtime, call.body)


async def index_files(call: Call[IndexRequested], runtime: Runtime[Any]) -> IndexCompleted:
    """Index files of the workspace, or inline documents."""
    return await indexer.index(service_of(runtime), runtime.settings.workspace_dir, call.body)


async def search_collection(call: Call[SearchRequested], runtime: Runtime[Any]) -> SearchCompleted:
    """Search a collection (vector or hybrid)."""
    return await search.search(service_of(runtime), call.body)


# ---------------------------------------------------------------- events


async def on_embeddings_requested(event: CloudEvent, runtime: Runtime[Any]) -> CloudEvent:
    request = decode_data(event, EmbeddingsRequested)
    service = service_of(runtime)
    vectors, tokens = await embed_texts(service, request.input, request.model)
    reply = EmbeddingsCompleted(
        model=service.model.name,
        dimension=service.model.dimension,
        embeddings=vectors.tolist(),
        prompt_tokens=tokens,
    )
    return new_event(EMBEDDINGS_COMPLETED, runtime.source, reply, subject=event.id)


async def on_index_requested(event: CloudEvent, runtime: Runtime[Any]) -> CloudEvent:
    request = decode_data(event, IndexRequested)
    result = await indexer.index(service_of(runtime), runtime.settings.workspace_dir, request)
    return new_event(INDEX_COMPLETED, runtime.source, result, subject=event.id)


async def on_search_requested(event: CloudEvent, runtime: Runtime[Any]) -> CloudEvent:
    request = decode_data(event, SearchRequested)
    result = await search.search(service_of(runtime), request)
    return new_event(SEARCH_COMPLETED, runtime.source, result, subject=event.id)
