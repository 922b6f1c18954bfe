"""What the embeddings function holds once started (model, batcher, cache, vector store) and its typed state.

`EmbeddingService.start` is the slow part of start-up (loading and warming the
model); it runs off the liveness path. Until it has finished, requests that
need the model are answered 503.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.answers import Refusal
from common.embedding_model import EmbeddingModel, load_model
from common.runtime import Runtime
from common.workspace import SECRET_FILES
from functions.embeddings.batcher import MicroBatcher
from functions.embeddings.embedding_cache import EmbeddingCache
from functions.embeddings.settings import EmbeddingSettings
from functions.embeddings.vector_store import IndexPlan, VectorStore

log = logging.getLogger(__name__)


@dataclass
class EmbeddingService:
    settings: EmbeddingSettings
    model: EmbeddingModel
    batcher: MicroBatcher
    cache: EmbeddingCache
    store: VectorStore
    # The shared VICTOR_SECRET_FILES: the indexer never reads those files.
    secret_files: tuple[str, ...] = SECRET_FILES

    @property
    def max_input_tokens(self) -> int:
        return self.settings.max_input_tokens or self.model.max_tokens

    @property
    def chunk_tokens(self) -> int:
        """Tokens a chunk may hold: the setting, never more than the model's window (16 at least)."""
        return max(16, min(self.settings.chunk_tokens or self.model.max_tokens, self.model.max_tokens))

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await self.cache.embed(texts, self.batcher)

    async def count_tokens(self, texts: list[str]) -> list[int]:
        return await asyncio.to_thread(self.model.count_tokens, texts)


async def start_service(runtime: Runtime[EmbeddingsState], settings: EmbeddingSettings) -> EmbeddingService:
    model = await asyncio.to_thread(
        load_model, runtime.settings.embedding_model, settings.device, runtime.settings.embedding_backend
    )
    batcher = MicroBatcher(
        model.encode, max_batch_size=settings.max_batch_size, max_wait=settings.max_wait_ms / 1000
    )
    batcher.start()
    service = EmbeddingService(
        settings=settings,
        model=model,
        batcher=batcher,
        cache=EmbeddingCache(runtime.cache, model.name, model.dimension, runtime.settings.cache_ttl),
        store=VectorStore(
            runtime.lancedb,
            model.name,
            model.dimension,
            IndexPlan(settings.vector_index_threshold, settings.vector_index_type),
        ),
        secret_files=runtime.settings.secret_files,
    )
    runtime.state.service = service
    # Connected beside the server once the model is in: the first search need not wait for the import.
    runtime.background(_connect_lancedb(runtime), "connect lancedb")
    return service


async def _connect_lancedb(runtime: Runtime[Any]) -> None:
    try:
        await asyncio.to_thread(runtime.lancedb)
    except Exception as exc:  # said again, to the request, by the first index or search
        log.warning("LanceDB could not be opened yet: %s", type(exc).__name__)


@dataclass
class EmbeddingsState:
    """The embeddings function's state: the service, once the model has loaded, and the running index
    jobs by id (`functions.embeddings.jobs`), which a stopping replica drains."""

    service: EmbeddingService | None = None
    jobs: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    draining: bool = False


def service_of(runtime: Runtime[Any]) -> EmbeddingService:
    """The started service; refuses with 503 while the model is still loading."""
    service = runtime.state.service
    if service is None:
        reason = runtime.startup_error or "the embedding model is still loading"
        raise Refusal.unavailable(f"embeddings are not available yet: {reason}")
    assert isinstance(service, EmbeddingService)
    return service
