"""The embeddings function's handlers: its HTTP routes and its CloudEvent handlers, over the same logic."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import msgspec
import numpy as np

from common.answers import Answer, Refusal, StreamedAnswer, json_answer
from common.cloudevents import CloudEvent, decode_data, new_event
from common.embedding_model import model_id
from common.function import Call
from common.openai_api import ModelCard, ModelList
from common.runtime import Runtime
from eventing.schemas.embeddings import (
    EMBEDDINGS_COMPLETED,
    INDEX_COMPLETED,
    SEARCH_COMPLETED,
    EmbeddingsCompleted,
    EmbeddingsRequested,
    IndexCompleted,
    IndexJob,
    IndexProgress,
    IndexRequest,
    IndexRequested,
    SearchCompleted,
    SearchRequested,
)
from functions.embeddings import indexer, jobs, search
from functions.embeddings.service import EmbeddingService, service_of

log = logging.getLogger(__name__)


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
    if model is not None and not loaded.answers_to(model):
        raise _reject(
            f"the model {model!r} does not exist here; this function serves {loaded.id!r}",
            404,
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
        data=data, model=service.model.id, usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens)
    )


# ---------------------------------------------------------------- routes


async def create_embeddings(call: Call[EmbeddingRequest], runtime: Runtime[Any]) -> EmbeddingResponse:
    """One vector per input, in the OpenAI embeddings response shape."""
    return await openai_embeddings(runtime, call.body)


async def list_models(call: Call[None], runtime: Runtime[Any]) -> ModelList:
    """The served model by its short id (answered while the model still loads: the id needs no load)."""
    return ModelList(data=[ModelCard(id=model_id(runtime.settings.embedding_model))])


def prefers_async(headers: Mapping[str, str]) -> bool:
    """Whether the request's `Prefer` header (RFC 7240) holds `respond-async`."""
    prefer = ",".join(value for name, value in headers.items() if name.lower() == "prefer")
    return any(
        part.split(";")[0].split("=")[0].strip().lower() == "respond-async" for part in prefer.split(",")
    )


async def index_files(
    call: Call[IndexRequest], runtime: Runtime[Any]
) -> IndexCompleted | Answer | StreamedAnswer:
    """Index files of the workspace, or inline documents: answered with the result, or (`background`,
    `Prefer: respond-async`) 202 with the job at once, or (`progress`) an NDJSON stream of progress.

    A job in the background or streamed is a task of the function, so it finishes (and its files are
    indexed) even when the client stops reading or its request times out.
    """
    service = service_of(runtime)  # 503 before any stream starts while the model loads
    request = call.body
    respond_async = prefers_async(call.headers)
    if not (request.progress or request.background or respond_async):
        return await indexer.index(service, runtime.settings.workspace_dir, request)
    # A bad request is a 4xx now, not a failed job or an error inside a 200 stream.
    indexer.check_request(request)
    if request.documents is not None:
        indexer.document_sources(request, service)
    jobs.check_accepting(runtime)
    job_id = jobs.new_job_id()
    if request.background or respond_async:
        run = jobs.IndexJobRun(runtime, service, request, job_id, resumable=True)
        await jobs.save(runtime.cache, run.job)  # 503 when Redis cannot keep it: nothing has started
        accepted = json_answer(202, run.job, {"location": run.job.status_url})
        if respond_async:
            accepted.headers["preference-applied"] = "respond-async"
        jobs.start(runtime, job_id, run.run_unobserved())
        return accepted
    return _streamed(runtime, service, request, job_id)


def _streamed(
    runtime: Runtime[Any], service: EmbeddingService, request: IndexRequest, job_id: str
) -> StreamedAnswer:
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def report(progress: IndexProgress) -> None:
        lines.put_nowait(msgspec.json.encode(progress) + b"\n")

    run = jobs.IndexJobRun(runtime, service, request, job_id, report, resumable=True)

    async def stream_run() -> None:
        try:
            await run.record()
            result = await run.run()
            done = {"event": "done", "job_id": job_id, "result": result}
            lines.put_nowait(msgspec.json.encode(done) + b"\n")
        except Exception:  # its refusal is in the record (the details of a failure are in the log)
            error = {"event": "error", "job_id": job_id, **msgspec.to_builtins(run.job.error)}
            lines.put_nowait(msgspec.json.encode(error) + b"\n")
        finally:
            lines.put_nowait(None)

    jobs.start(runtime, job_id, stream_run())

    async def stream() -> AsyncIterator[bytes]:
        while (line := await lines.get()) is not None:
            yield line

    return StreamedAnswer(
        200,
        {
            "content-type": "application/x-ndjson",
            "cache-control": "no-cache",
            "location": jobs.status_url(job_id),
        },
        stream(),
    )


async def get_index_job(call: Call[None], runtime: Runtime[Any]) -> IndexJob:
    """The job's latest record, from any replica; 404 when none is kept (unknown, or over 24 hours old)."""
    job_id = jobs.parse_job_id(call.params["job_id"])
    job = await jobs.load(runtime.cache, job_id)
    if job is None:
        raise Refusal(404, f"index job {job_id} does not exist (or ended over 24 hours ago)", "not_found")
    return job


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
    """Index as a job (progress events, drained at stop) whose id comes from the event's source and id."""
    request = decode_data(event, IndexRequested)
    job_id = jobs.event_job_id(event.source, event.id)
    task = runtime.state.jobs.get(job_id)  # a redelivery while the first delivery's run goes on
    if task is None:
        jobs.check_accepting(runtime)
        run = jobs.IndexJobRun(runtime, service_of(runtime), request, job_id)
        await run.record()
        task = jobs.start(runtime, job_id, run.run())
    # Shielded: a delivery that times out leaves the job running (drained at stop).
    result = await asyncio.shield(task)
    return new_event(INDEX_COMPLETED, runtime.source, result, subject=event.id)


async def on_search_requested(event: CloudEvent, runtime: Runtime[Any]) -> CloudEvent:
    request = decode_data(event, SearchRequested)
    result = await search.search(service_of(runtime), request)
    return new_event(SEARCH_COMPLETED, runtime.source, result, subject=event.id)
