"""Settings of the embeddings function, read with the shared `EnvReader`.

The model itself is `VICTOR_EMBEDDING_MODEL` in `common.settings.Settings`;
these are the knobs of batching, request limits, chunking (in the model's tokens) and the vector index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from common.settings import EnvReader


class EmbeddingSettings(msgspec.Struct, frozen=True, kw_only=True):
    device: str = "auto"
    max_batch_size: int = 64
    max_wait_ms: float = 5.0
    max_inputs: int = 2048
    # 0 means the model's own window, so nothing is ever truncated silently.
    max_input_tokens: int = 0
    chunk_lines: int = 40
    chunk_overlap: int = 8
    # Tokens a chunk may hold; 0 means the model's window (its max sequence length).
    chunk_tokens: int = 0
    max_file_bytes: int = 1024 * 1024
    max_files: int = 5000
    # Seconds a stopping replica waits for running index jobs before it cancels them (marked
    # `interrupted`); below Knative's termination grace (the Service's timeoutSeconds, 300).
    drain_seconds: float = 240.0
    max_k: int = 100
    # Past this many rows a collection gets an ANN vector index (below it, flat search is exact and fast).
    vector_index_threshold: int = 20000
    vector_index_type: str = "IVF_HNSW_SQ"
    search_nprobes: int = 20
    search_refine_factor: int = 0


def load_embedding_settings(environ: Mapping[str, str] | None = None) -> EmbeddingSettings:
    """Parse the embeddings function's variables; raises `SettingsError` naming a bad one."""
    env = EnvReader(os.environ if environ is None else environ)
    chunk_lines = env.integer("VICTOR_EMBEDDING_CHUNK_LINES", 40, minimum=1, maximum=10000)
    return EmbeddingSettings(
        device=env.choice("VICTOR_EMBEDDING_DEVICE", "auto", ("auto", "cpu", "cuda", "mps")),
        max_batch_size=env.integer("VICTOR_EMBEDDING_MAX_BATCH_SIZE", 64, minimum=1, maximum=4096),
        max_wait_ms=env.number("VICTOR_EMBEDDING_MAX_WAIT_MS", 5.0),
        max_inputs=env.integer("VICTOR_EMBEDDING_MAX_INPUTS", 2048, minimum=1),
        max_input_tokens=env.integer("VICTOR_EMBEDDING_MAX_INPUT_TOKENS", 0, minimum=0),
        chunk_lines=chunk_lines,
        chunk_overlap=env.integer("VICTOR_EMBEDDING_CHUNK_OVERLAP", 8, minimum=0, maximum=chunk_lines - 1),
        chunk_tokens=env.integer("VICTOR_EMBEDDING_CHUNK_TOKENS", 0, minimum=0),
        max_file_bytes=env.size("VICTOR_INDEX_MAX_FILE_BYTES", 1024 * 1024),
        max_files=env.integer("VICTOR_INDEX_MAX_FILES", 5000, minimum=1),
        drain_seconds=env.number("VICTOR_INDEX_DRAIN_SECONDS", 240.0),
        max_k=env.integer("VICTOR_SEARCH_MAX_K", 100, minimum=1, maximum=10000),
        vector_index_threshold=env.integer("VICTOR_VECTOR_INDEX_THRESHOLD", 20000, minimum=256),
        vector_index_type=env.choice(
            "VICTOR_VECTOR_INDEX_TYPE", "IVF_HNSW_SQ", ("IVF_HNSW_SQ", "IVF_PQ", "IVF_FLAT")
        ),
        search_nprobes=env.integer("VICTOR_SEARCH_NPROBES", 20, minimum=1),
        search_refine_factor=env.integer("VICTOR_SEARCH_REFINE_FACTOR", 0, minimum=0),
    )
