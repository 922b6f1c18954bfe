"""Tool selection: the k tools most relevant to a query, by keyword, semantic or hybrid ranking.

- keyword: Okapi BM25 (k1=1.5, b=0.75) over each tool's name (split on `_`)
  and description, lower-cased alphanumeric tokens with a trailing plural `s`
  dropped.
- semantic: cosine similarity between the query's embedding and each tool's
  description embedding. Tool embeddings are computed once per catalog version
  and model, kept in memory and in Redis (`victor:tools:vectors:<version>:<model>`),
  so requests only embed the query.
- hybrid: reciprocal rank fusion, score = Σ 1 / (60 + rank) over the BM25 and
  the semantic ranking (rank from 1; a tool with a BM25 score of 0 gets no
  keyword term). RRF needs no score normalisation and is robust to the very
  different scales of BM25 scores and cosines.
- auto: hybrid when embeddings are available (an embeddings function, or a
  loadable local model), else keyword.

A selection never drops a tool the request may need: when the catalog has at
most `keep_all_up_to` tools (chat sends VICTOR_CHAT_TOOLS_PRUNE_THRESHOLD), or
when the ranking has no signal (every score equal, e.g. a keyword query sharing
no word with any tool), every tool is returned, best first, and `pruned` is false.

Selections are cached (VICTOR_ENABLE_TOOL_CACHE): an in-process LRU of
VICTOR_TOOL_CACHE_SIZE entries in front of Redis entries that live
VICTOR_TOOL_CACHE_TTL seconds, keyed by catalog version, strategy, k and the
normalised query; look-ups count as `victor_cache_hit_ratio{cache="tool_selection"}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from common import metrics as common_metrics
from common.cache import Cache
from functions.tools.registry import ToolRegistry
from functions.tools.text_embedder import Embedder, EmbeddingsUnavailable

if TYPE_CHECKING:  # numpy loads with the first semantic ranking
    import numpy as np

Strategy = Literal["keyword", "semantic", "hybrid", "auto"]
RRF_K = 60
CACHE_NAME = "tool_selection"
_TOKEN = re.compile(r"[a-z0-9]+")


class SelectRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    strategy: Strategy = "auto"
    # Catalogs of at most this many tools are returned whole (0: always keep only k).
    keep_all_up_to: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0


class SelectedTool(msgspec.Struct, kw_only=True):
    name: str
    score: float
    description: str


class Selection(msgspec.Struct, kw_only=True):
    query: str
    strategy: Strategy
    used: Literal["keyword", "semantic", "hybrid"]
    catalog_version: str
    cached: bool
    tools: list[SelectedTool]
    # False when every tool was kept (small catalog, or a ranking with no signal).
    pruned: bool = True


class SelectionUnavailable(RuntimeError):
    """The strategy asked for needs embeddings that cannot be computed now."""


def tokens(text: str) -> list[str]:
    found = _TOKEN.findall(text.lower())
    return [
        token[:-1] if len(token) > 3 and token.endswith("s") and not token.endswith("ss") else token
        for token in found
    ]


class BM25:
    """Okapi BM25 over a fixed set of documents."""

    def __init__(self, documents: list[list[str]], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.frequencies = [Counter(doc) for doc in documents]
        self.lengths = [len(doc) for doc in documents]
        self.average = (sum(self.lengths) / len(documents)) if documents else 0.0
        count = len(documents)
        document_frequency: Counter[str] = Counter()
        for doc in documents:
            document_frequency.update(set(doc))
        self.idf = {
            term: math.log(1 + (count - df + 0.5) / (df + 0.5)) for term, df in document_frequency.items()
        }

    def scores(self, query: list[str]) -> list[float]:
        results = []
        for frequencies, length in zip(self.frequencies, self.lengths, strict=True):
            score = 0.0
            for term in query:
                tf = frequencies.get(term, 0)
                if tf:
                    norm = tf + self.k1 * (1 - self.b + self.b * length / (self.average or 1))
                    score += self.idf[term] * tf * (self.k1 + 1) / norm
            results.append(score)
        return results


def reciprocal_rank_fusion(rankings: list[list[int]], count: int) -> list[float]:
    """RRF scores per item index from several rankings (best first)."""
    fused = [0.0] * count
    for ranking in rankings:
        for rank, index in enumerate(ranking, start=1):
            fused[index] += 1.0 / (RRF_K + rank)
    return fused


def keeps_only_k(scores: list[float], request: SelectRequest) -> bool:
    """Whether a selection may drop tools: a catalog above the threshold and a ranking with signal."""
    if len(scores) <= max(request.k, request.keep_all_up_to):
        return False
    # Equal scores order tools arbitrarily (by name): cutting there would hide tools at random.
    return max(scores) - min(scores) > 1e-9


class ToolSelector:
    def __init__(
        self,
        registry: ToolRegistry,
        embedder: Embedder | None,
        cache: Cache,
        *,
        cache_enabled: bool,
        cache_size: int,
        cache_ttl: int,
    ) -> None:
        self.registry = registry
        self.embedder = embedder
        self.cache = cache
        self.cache_enabled = cache_enabled and cache_size > 0
        self.cache_size = cache_size
        self.cache_ttl = cache_ttl
        self.tools = list(registry)
        self.bm25 = BM25([tokens(f"{t.name.replace('_', ' ')} {t.name} {t.description}") for t in self.tools])
        self._lru: OrderedDict[str, bytes] = OrderedDict()
        self._vectors: np.ndarray | None = None
        self._vectors_lock = asyncio.Lock()
        # How many times tool vectors were computed (not loaded): for tests and the benchmark.
        self.vector_computations = 0

    # ------------------------------------------------------------ embeddings

    def embeddings_available(self) -> bool:
        return self.embedder is not None and self.embedder.available()

    def _model_digest(self) -> str:
        """The embedding model in a cache key ("none" without one): rankings and vectors depend on it."""
        model = self.embedder.model if self.embedder is not None else "none"
        return hashlib.sha256(model.encode()).hexdigest()[:12]

    def _vectors_key(self) -> str:
        return self.cache.key("tools", "vectors", self.registry.version, self._model_digest())

    async def tool_vectors(self) -> np.ndarray:
        """Description embeddings for this catalog version: memory, then Redis, else computed once."""
        import numpy as np

        if self._vectors is not None:
            return self._vectors
        async with self._vectors_lock:
            if self._vectors is not None:
                return self._vectors
            if self.embedder is None:
                raise EmbeddingsUnavailable("no embedder is configured")
            key = self._vectors_key()
            stored = await self.cache.get(key)
            if stored is not None and len(stored) % (4 * len(self.tools)) == 0 and stored:
                self._vectors = np.frombuffer(stored, dtype=np.float32).reshape(len(self.tools), -1)
                return self._vectors
            texts = [f"{t.name.replace('_', ' ')}: {t.description}" for t in self.tools]
            vectors = await self.embedder.embed(texts)
            self.vector_computations += 1
            await self.cache.set(key, vectors.astype(np.float32).tobytes(), ttl=None)
            self._vectors = vectors
            return vectors

    async def _semantic_scores(self, query: str) -> list[float]:
        assert self.embedder is not None
        vectors = await self.tool_vectors()
        query_vector = (await self.embedder.embed([query]))[0]
        return [float(score) for score in vectors @ query_vector]

    # ------------------------------------------------------------ ranking

    async def rank(self, query: str, strategy: Strategy) -> tuple[str, list[float]]:
        """(strategy used, score per tool in catalog order), uncached."""
        if strategy == "auto":
            if self.embeddings_available():
                try:
                    return await self.rank(query, "hybrid")
                except SelectionUnavailable:
                    pass  # the model could not be loaded or the embeddings function is down
            strategy = "keyword"
        keyword = self.bm25.scores(tokens(query))
        if strategy == "keyword":
            return "keyword", keyword
        if not self.embeddings_available():
            raise SelectionUnavailable(f"{strategy} selection needs embeddings, and none are available")
        try:
            semantic = await self._semantic_scores(query)
        except EmbeddingsUnavailable as exc:
            raise SelectionUnavailable(f"{strategy} selection needs embeddings: {exc}") from None
        if strategy == "semantic":
            return "semantic", semantic
        count = len(self.tools)
        keyword_ranking = [i for i in sorted(range(count), key=lambda i: -keyword[i]) if keyword[i] > 0]
        semantic_ranking = sorted(range(count), key=lambda i: -semantic[i])
        return "hybrid", reciprocal_rank_fusion([keyword_ranking, semantic_ranking], count)

    def _cache_key(self, request: SelectRequest) -> str:
        query = " ".join(request.query.lower().split())
        shape = f"{request.strategy}\0{request.k}\0{request.keep_all_up_to}\0{query}"
        digest = hashlib.sha256(shape.encode()).hexdigest()
        # Two deployments with different models may share one Redis: a ranking is the model's own.
        return self.cache.key("tools", "selection", self.registry.version, self._model_digest(), digest)

    async def select(self, request: SelectRequest) -> Selection:
        """The k best tools, best first; `SelectionUnavailable` when embeddings are needed but missing."""
        key = self._cache_key(request) if self.cache_enabled else None
        if key is not None:
            stored = self._lru.get(key)
            if stored is not None:
                self._lru.move_to_end(key)
            else:
                stored = await self.cache.get(key)
                if stored is not None:
                    self._remember(key, stored)
            common_metrics.record_cache(CACHE_NAME, hit=stored is not None)
            if stored is not None:
                selection = msgspec.json.decode(stored, type=Selection)
                selection.cached = True
                selection.query = request.query
                return selection
        used, scores = await self.rank(request.query, request.strategy)
        order = sorted(range(len(self.tools)), key=lambda i: (-scores[i], self.tools[i].name))
        pruned = keeps_only_k(scores, request)
        if pruned:
            order = order[: request.k]
        selection = Selection(
            query=request.query,
            strategy=request.strategy,
            used=used,  # type: ignore[arg-type]
            catalog_version=self.registry.version,
            cached=False,
            pruned=pruned,
            tools=[
                SelectedTool(
                    name=self.tools[i].name, score=round(scores[i], 6), description=self.tools[i].description
                )
                for i in order
            ],
        )
        if key is not None:
            encoded = msgspec.json.encode(selection)
            self._remember(key, encoded)
            await self.cache.set(key, encoded, ttl=self.cache_ttl)
        return selection

    def _remember(self, key: str, value: bytes) -> None:
        self._lru[key] = value
        self._lru.move_to_end(key)
        while len(self._lru) > self.cache_size:
            self._lru.popitem(last=False)
