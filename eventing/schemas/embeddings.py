"""Payloads of the embeddings function's events: embeddings, index and search, each requested and completed.

The same Structs are the HTTP bodies of `POST /v1/index` and `POST /v1/search`,
so a request means the same thing whether it arrives as an event or over HTTP.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from eventing.schemas.event_type import EventType, Payload

SearchMode = Literal["vector", "hybrid"]


class Document(msgspec.Struct, kw_only=True):
    """A document given inline; `id` plays the part of a file path in results."""

    id: str
    text: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class SearchFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every given field must match: an exact path, a path prefix (a directory), a language."""

    path: str | None = None
    path_prefix: str | None = None
    language: str | None = None


class SearchHit(msgspec.Struct, kw_only=True):
    path: str
    start_line: int
    end_line: int
    language: str
    text: str
    score: float
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class EmbeddingsRequested(Payload, kw_only=True):
    input: list[str]
    model: str | None = None


class EmbeddingsCompleted(Payload, kw_only=True):
    model: str
    dimension: int
    embeddings: list[list[float]]
    prompt_tokens: int


class IndexRequested(Payload, kw_only=True):
    """Index either `documents` or a `path` (file, directory or glob inside WORKSPACE_DIR)."""

    collection: str = "default"
    path: str | None = None
    documents: list[Document] | None = None


class IndexRequest(IndexRequested, kw_only=True):
    """`POST /v1/index`'s body: an index request, optionally answered as a stream of progress or as a job.

    With `progress`, the answer is NDJSON: `{"event": "progress", "job_id": ...}` lines as chunks
    are embedded, then one `{"event": "done", "result": IndexCompleted}` or `{"event": "error", ...}`.
    With `background` (or the header `Prefer: respond-async`), the answer is 202 with an `IndexJob`
    at once; `GET /v1/index/jobs/{job_id}` follows it. Either way the indexing runs to its end
    even when the client goes away.
    """

    progress: bool = False
    background: bool = False


class IndexProgress(Payload, kw_only=True):
    """One progress report of an index run (`event` is always "progress"): an NDJSON line of
    `POST /v1/index` and the data of `ai.victor.index.progress` (whose subject is `job_id`)."""

    event: str = "progress"
    job_id: str | None = None
    files_total: int
    files_changed: int
    chunks_total: int
    chunks_done: int


class IndexCompleted(Payload, kw_only=True):
    collection: str
    model: str
    files_indexed: int
    files_unchanged: int
    files_removed: int = 0
    chunks_added: int
    chunks_removed: int
    total_chunks: int
    vector_index: bool
    skipped: dict[str, str] = msgspec.field(default_factory=dict)


IndexJobState = Literal["running", "completed", "failed", "interrupted"]


class JobError(msgspec.Struct, kw_only=True):
    """Why a job did not complete: the one error body's `status_code`, `error` (code) and `detail`."""

    status_code: int
    error: str
    detail: str


class IndexJob(msgspec.Struct, kw_only=True):
    """An index run followed by its id: `POST /v1/index` in the background answers it (202), and
    `GET /v1/index/jobs/{job_id}` answers its latest state (kept 24 hours in Redis)."""

    job_id: str
    state: IndexJobState
    status_url: str
    collection: str
    progress: IndexProgress | None = None
    result: IndexCompleted | None = None
    error: JobError | None = None
    created_at: str
    updated_at: str


class SearchRequested(Payload, kw_only=True):
    query: str
    k: int = 10
    collection: str = "default"
    mode: SearchMode = "vector"
    filter: SearchFilter | None = None


class SearchCompleted(Payload, kw_only=True):
    query: str
    collection: str
    mode: SearchMode
    model: str
    results: list[SearchHit]


EMBEDDINGS_REQUESTED_EVENT = EventType("ai.victor.embeddings.requested", EmbeddingsRequested)
EMBEDDINGS_REQUESTED = EMBEDDINGS_REQUESTED_EVENT.name
EMBEDDINGS_COMPLETED_EVENT = EventType("ai.victor.embeddings.completed", EmbeddingsCompleted)
EMBEDDINGS_COMPLETED = EMBEDDINGS_COMPLETED_EVENT.name
INDEX_REQUESTED_EVENT = EventType("ai.victor.index.requested", IndexRequested)
INDEX_REQUESTED = INDEX_REQUESTED_EVENT.name
INDEX_COMPLETED_EVENT = EventType("ai.victor.index.completed", IndexCompleted)
INDEX_COMPLETED = INDEX_COMPLETED_EVENT.name
# A notification while an index run goes on (at most about one a second, and its last report).
INDEX_PROGRESS_EVENT = EventType("ai.victor.index.progress", IndexProgress)
INDEX_PROGRESS = INDEX_PROGRESS_EVENT.name
SEARCH_REQUESTED_EVENT = EventType("ai.victor.search.requested", SearchRequested)
SEARCH_REQUESTED = SEARCH_REQUESTED_EVENT.name
SEARCH_COMPLETED_EVENT = EventType("ai.victor.search.completed", SearchCompleted)
SEARCH_COMPLETED = SEARCH_COMPLETED_EVENT.name
