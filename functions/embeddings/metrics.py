"""Metrics of the embeddings function, on the shared registry."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from common.metrics import LATENCY_BUCKETS, REGISTRY

texts_embedded = Counter(
    "victor_embedding_texts_total",
    "Texts asked for, by where their vector came from (model or cache)",
    ["source"],
    registry=REGISTRY,
)
model_batches = Counter(
    "victor_embedding_model_batches_total",
    "Batches the model encoded",
    registry=REGISTRY,
)
batch_size = Histogram(
    "victor_embedding_batch_size",
    "Texts per model batch (micro-batching coalesces concurrent requests)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
encode_duration = Histogram(
    "victor_embedding_encode_seconds",
    "Time the model spent on one batch",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
index_duration = Histogram(
    "victor_index_duration_seconds",
    "Time to index one request (files or documents)",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
chunks_indexed = Counter(
    "victor_index_chunks_total",
    "Chunks written to or removed from collections",
    ["action"],
    registry=REGISTRY,
)
search_duration = Histogram(
    "victor_search_duration_seconds",
    "Time to answer one search, by mode",
    ["mode"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
