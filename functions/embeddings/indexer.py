"""Indexing: files under WORKSPACE_DIR or inline documents become chunks with vectors in a collection.

Each source (a file's workspace-relative path, or a document's id) is hashed
with the chunking settings; a source whose hash is already stored is skipped,
and a changed one has all its old chunks replaced, so search never returns
stale text.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from common.answers import Refusal
from common.workspace import Workspace, WorkspaceError
from eventing.schemas.embeddings import IndexCompleted, IndexProgress, IndexRequested
from functions.embeddings import metrics
from functions.embeddings.chunking import Chunk, chunk_text
from functions.embeddings.service import EmbeddingService
from functions.embeddings.vector_store import ModelMismatch, check_collection_name
from functions.embeddings.workspace_files import SelectionRefused, select_files


@dataclass
class Source:
    path: str
    text: str
    metadata: dict[str, Any]


def content_hash(service: EmbeddingService, text: str, metadata: dict[str, Any]) -> str:
    settings = service.settings
    digest = hashlib.sha256(
        f"{settings.chunk_lines}:{settings.chunk_overlap}:{service.chunk_tokens}\0".encode()
    )
    digest.update(text.encode())
    digest.update(msgspec.json.encode(metadata, order="sorted"))
    return digest.hexdigest()


def read_sources(
    workspace: Path, requested: str, service: EmbeddingService
) -> tuple[list[Source], dict[str, str], str | None]:
    """Blocking: the text files `requested` names, those skipped with why, and the directory walked whole."""
    selection = select_files(
        workspace,
        requested,
        max_file_bytes=service.settings.max_file_bytes,
        max_files=service.settings.max_files,
    )
    # Read through the tools' confinement: a symlink swapped in after selection is still refused, and
    # secret files and hard links are skipped, each with its reason.
    confined = Workspace(
        workspace, max_file_size=service.settings.max_file_bytes, secret_files=service.secret_files
    )
    sources = []
    for path in selection.files:
        relative = path.relative_to(workspace).as_posix()
        try:
            content = confined.read(relative)
        except WorkspaceError as exc:
            selection.skipped[relative] = exc.message
            continue
        except OSError as exc:
            selection.skipped[relative] = f"unreadable: {type(exc).__name__}"
            continue
        if content.text is None:
            selection.skipped[relative] = "not UTF-8 text"
            continue
        sources.append(Source(relative, content.text, {}))
    return sources, selection.skipped, selection.complete_directory


def document_sources(request: IndexRequested, service: EmbeddingService) -> list[Source]:
    documents = request.documents or []
    if not documents:
        raise Refusal(422, "documents is empty; give at least one {id, text}", "invalid_request")
    if len(documents) > service.settings.max_files:
        raise Refusal(
            413,
            f"{len(documents)} documents exceed VICTOR_INDEX_MAX_FILES={service.settings.max_files}",
            "too_large",
        )
    seen: set[str] = set()
    for number, document in enumerate(documents):
        if not document.id.strip():
            raise Refusal(422, f"documents[{number}].id is empty", "invalid_request")
        if document.id in seen:
            raise Refusal(422, f"documents[{number}].id {document.id!r} appears twice", "invalid_request")
        if len(document.text.encode()) > service.settings.max_file_bytes:
            raise Refusal(
                413,
                f"documents[{number}].text is larger than "
                f"VICTOR_INDEX_MAX_FILE_BYTES={service.settings.max_file_bytes}",
                "too_large",
            )
        seen.add(document.id)
    return [Source(d.id, d.text, d.metadata) for d in documents]


def _chunks(service: EmbeddingService, source: Source) -> list[Chunk]:
    settings = service.settings
    return chunk_text(
        source.path,
        source.text,
        tokenizer=service.model.tokenizer,
        max_tokens=service.chunk_tokens,
        max_lines=settings.chunk_lines,
        overlap=settings.chunk_overlap,
    )


def check_request(request: IndexRequested) -> None:
    """Refuse (422) a request that names no valid collection, or not exactly one of path and documents."""
    try:
        check_collection_name(request.collection)
    except ValueError as exc:
        raise Refusal(422, str(exc), "invalid_request") from None
    if (request.path is None) == (request.documents is None):
        raise Refusal(422, "give exactly one of path (inside WORKSPACE_DIR) or documents", "invalid_request")


def chunk_id(chunk: Chunk, seen: dict[str, int]) -> str:
    """`path:start-end`, with `#n` after the first when one long line gave several chunks."""
    base = f"{chunk.path}:{chunk.start_line}-{chunk.end_line}"
    seen[base] = seen.get(base, -1) + 1
    return f"{base}#{seen[base]}" if seen[base] else base


# Chunks embedded between two progress reports.
PROGRESS_BATCH = 128
Progress = Callable[[IndexProgress], Awaitable[None]]


async def index(
    service: EmbeddingService, workspace: Path, request: IndexRequested, progress: Progress | None = None
) -> IndexCompleted:
    """Index the request's files or documents; unchanged sources are skipped, changed ones replaced.

    `progress`, when given, hears how many chunks are embedded after every `PROGRESS_BATCH`.
    """
    started = time.perf_counter()
    check_request(request)
    skipped: dict[str, str] = {}
    directory: str | None = None
    if request.path is not None:
        try:
            sources, skipped, directory = await asyncio.to_thread(
                read_sources, workspace, request.path, service
            )
        except SelectionRefused as exc:
            raise Refusal(exc.status, exc.message, "invalid_path") from None
    else:
        sources = document_sources(request, service)
    store = service.store
    try:
        table = await asyncio.to_thread(store.table, request.collection, create=True)
    except ModelMismatch as exc:
        raise Refusal(409, str(exc), "model_mismatch") from None
    hashes = {s.path: content_hash(service, s.text, s.metadata) for s in sources}
    stored = await asyncio.to_thread(store.stored_hashes, table, list(hashes))
    changed = [s for s in sources if stored.get(s.path) != hashes[s.path]]
    # A directory indexed whole again: its files that are gone (deleted, now ignored or binary) leave too.
    gone: list[str] = []
    if directory is not None:
        present = await asyncio.to_thread(store.file_paths_under, table, directory)
        gone = sorted(present - set(hashes))
    # Tokenizing is CPU work: off the event loop.
    chunks = await asyncio.to_thread(
        lambda: [(source, chunk) for source in changed for chunk in _chunks(service, source)]
    )
    texts = [chunk.text for _, chunk in chunks]
    parts: list[np.ndarray] = []

    async def report(done: int) -> None:
        if progress is not None:
            files, changes, total = len(sources), len(changed), len(texts)
            await progress(
                IndexProgress(files_total=files, files_changed=changes, chunks_total=total, chunks_done=done)
            )

    for start in range(0, len(texts), PROGRESS_BATCH):
        await report(start)
        parts.append(await service.embed(texts[start : start + PROGRESS_BATCH]))
    await report(len(texts))
    vectors = np.vstack(parts) if parts else np.zeros((0, 0))
    seen: dict[str, int] = {}
    rows = [
        {
            "id": chunk_id(chunk, seen),
            "path": chunk.path,
            "start_line": chunk.start_line,
            "end_line": chunk.end_line,
            "language": chunk.language,
            "text": chunk.text,
            "metadata": msgspec.json.encode(source.metadata).decode(),
            "content_hash": hashes[source.path],
            "kind": "document" if request.documents is not None else "file",
            "vector": vector.tolist(),
        }
        for (source, chunk), vector in zip(chunks, vectors, strict=True)
    ]

    def write() -> tuple[int, int, bool]:
        with store.write_lock(request.collection):
            replaced = [s.path for s in changed] + gone
            removed = store.replace(table, replaced, rows) if replaced else 0
            store.maintain(table)
            return removed, table.count_rows(), store.has_vector_index(table)

    removed, total, indexed = await asyncio.to_thread(write)
    metrics.chunks_indexed.labels("added").inc(len(rows))
    metrics.chunks_indexed.labels("removed").inc(removed)
    metrics.index_duration.observe(time.perf_counter() - started)
    return IndexCompleted(
        collection=request.collection,
        model=service.model.name,
        files_indexed=len(changed),
        files_unchanged=len(sources) - len(changed),
        files_removed=len(gone),
        chunks_added=len(rows),
        chunks_removed=removed,
        total_chunks=total,
        vector_index=indexed,
        skipped=skipped,
    )
