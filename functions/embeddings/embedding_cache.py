"""The shared embedding cache in Redis, keyed by model and the SHA-256 of the text.

Vectors are stored as raw float32 bytes. Only texts missing from the cache reach
the model; identical texts within one request are encoded once. Redis being
down only makes every look-up a miss (the shared cache is fail-soft).
"""

from __future__ import annotations

import hashlib

import numpy as np

from common.cache import Cache
from functions.embeddings import metrics
from functions.embeddings.batcher import MicroBatcher

CACHE_NAME = "embeddings"


class EmbeddingCache:
    def __init__(self, cache: Cache, model_name: str, dimension: int, ttl: int) -> None:
        self.cache = cache
        self.dimension = dimension
        self.ttl = ttl
        # The model name may hold a path or slashes; its hash keeps keys short and uniform.
        self._model_key = hashlib.sha256(model_name.encode()).hexdigest()[:16]

    def key(self, text: str) -> str:
        return self.cache.key("emb", self._model_key, hashlib.sha256(text.encode()).hexdigest())

    async def embed(self, texts: list[str], batcher: MicroBatcher) -> np.ndarray:
        """One vector per text: cached ones from Redis, the rest from the model (then cached)."""
        unique = list(dict.fromkeys(texts))
        keys = [self.key(text) for text in unique]
        found = await self.cache.get_many(keys, cache=CACHE_NAME)
        vectors: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for text, raw in zip(unique, found, strict=True):
            if raw is not None and len(raw) == 4 * self.dimension:
                vectors[text] = np.frombuffer(raw, dtype=np.float32)
            else:
                missing.append(text)
        metrics.texts_embedded.labels("cache").inc(len(unique) - len(missing))
        if missing:
            encoded = await batcher.embed(missing)
            fresh = {}
            for text, vector in zip(missing, encoded, strict=True):
                vectors[text] = vector
                fresh[self.key(text)] = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
            await self.cache.set_many(fresh, ttl=self.ttl)
        return np.vstack([vectors[text] for text in texts]).astype(np.float32, copy=False)
