"""Semantic search over a collection: vector (cosine) or hybrid (vector + LanceDB full-text, fused by RRF)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from common.answers import Refusal
from eventing.schemas.embeddings import SearchCompleted, SearchFilter, SearchHit, SearchRequested
from functions.embeddings import metrics
from functions.embeddings.service import EmbeddingService
from functions.embeddings.settings import EmbeddingSettings
from functions.embeddings.vector_store import ModelMismatch, UnknownCollection, check_collection_name, quote

COLUMNS = ["path", "start_line", "end_line", "language", "text", "metadata"]


def where_clause(selected: SearchFilter | None) -> str | None:
    if selected is None:
        return None
    parts = []
    if selected.path is not None:
        parts.append(f"path = {quote(selected.path)}")
    if selected.path_prefix is not None:
        parts.append(f"starts_with(path, {quote(selected.path_prefix)})")
    if selected.language is not None:
        parts.append(f"language = {quote(selected.language)}")
    return " AND ".join(parts) or None


def validate(request: SearchRequested, max_k: int) -> None:
    if not request.query.strip():
        raise Refusal(422, "query is empty; give the words to search for", "invalid_request")
    if not 1 <= request.k <= max_k:
        raise Refusal(
            422, f"k must be between 1 and {max_k} (VICTOR_SEARCH_MAX_K); got {request.k}", "invalid_request"
        )
    try:
        check_collection_name(request.collection)
    except ValueError as exc:
        raise Refusal(422, str(exc), "invalid_request") from None


def _hits(rows: list[dict[str, Any]], score_of: Any) -> list[SearchHit]:
    return [
        SearchHit(
            path=row["path"],
            start_line=int(row["start_line"]),
            end_line=int(row["end_line"]),
            language=row["language"],
            text=row["text"],
            score=round(float(score_of(row)), 6),
            metadata=msgspec.json.decode(row["metadata"]) if row.get("metadata") else {},
        )
        for row in rows
    ]


def tune(query: Any, settings: EmbeddingSettings, indexed: bool) -> Any:
    """Probe and refine settings for a table with an ANN index (flat search needs none)."""
    if indexed:
        query = query.nprobes(settings.search_nprobes)
        if settings.search_refine_factor:
            query = query.refine_factor(settings.search_refine_factor)
    return query


def vector_query(table: Any, vector: Any, k: int, settings: EmbeddingSettings, indexed: bool) -> Any:
    """The cosine k-nearest query the function runs (the benchmark measures this same query)."""
    query = tune(table.search(vector).metric("cosine"), settings, indexed)
    # Naming the distance column keeps LanceDB from adding it implicitly (and warning each time).
    return query.select([*COLUMNS, "_distance"]).limit(k)


def run_query(service: EmbeddingService, request: SearchRequested, vector: list[float]) -> list[SearchHit]:
    """Blocking: the query against LanceDB."""
    table = service.store.table(request.collection, create=False)
    if table.count_rows() == 0:
        return []
    where = where_clause(request.filter)
    settings = service.settings
    indexed = service.store.has_vector_index(table)
    if request.mode == "hybrid":
        query = table.search(query_type="hybrid").vector(vector).text(request.query)
        query = tune(query, settings, indexed).select(COLUMNS).limit(request.k)
    else:
        query = vector_query(table, vector, request.k, settings, indexed)
    if where:
        query = query.where(where, prefilter=True)
    rows = query.to_list()
    if request.mode == "hybrid":
        return _hits(rows, lambda row: row["_relevance_score"])
    return _hits(rows, lambda row: 1.0 - row["_distance"])


async def search(service: EmbeddingService, request: SearchRequested) -> SearchCompleted:
    """The `k` best chunks for the query; 404 for an unknown collection, 409 for another model's."""
    validate(request, service.settings.max_k)
    started = time.perf_counter()
    vector = (await service.embed([request.query]))[0].tolist()
    try:
        hits = await asyncio.to_thread(run_query, service, request, vector)
    except UnknownCollection as exc:
        raise Refusal(404, str(exc), "unknown_collection") from None
    except ModelMismatch as exc:
        raise Refusal(409, str(exc), "model_mismatch") from None
    metrics.search_duration.labels(request.mode).observe(time.perf_counter() - started)
    return SearchCompleted(
        query=request.query,
        collection=request.collection,
        mode=request.mode,
        model=service.model.name,
        results=hits,
    )
