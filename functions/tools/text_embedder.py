"""Text embeddings for tool selection and code_search.

`RemoteEmbedder` calls the embeddings function (POST {VICTOR_EMBEDDINGS_URL}/v1/embeddings,
OpenAI shape). When no embeddings function is configured, `LocalEmbedder`
loads sentence-transformers in this process, lazily (first use, in a worker
thread, never at import or start-up), from VICTOR_EMBEDDING_MODEL (a model
name in the local Hugging Face cache or a directory). Vectors are normalized,
so a dot product is the cosine similarity.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:  # numpy, httpx and the model load on the first embedding, never at start
    import httpx
    import numpy as np

    from common.embedding_model import EmbeddingModel

from common.tracing import current_headers

log = logging.getLogger(__name__)


class EmbeddingsUnavailable(RuntimeError):
    """No embeddings can be computed now (model missing, embeddings function down)."""


class Embedder(Protocol):
    model: str

    def available(self) -> bool: ...

    async def embed(self, texts: list[str]) -> np.ndarray: ...


def normalized(matrix: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: np.ndarray = (matrix / norms).astype(np.float32)
    return result


class _EmbeddingItem(msgspec.Struct):
    embedding: list[float]
    index: int


class _EmbeddingsResponse(msgspec.Struct):
    data: list[_EmbeddingItem]


class RemoteEmbedder:
    """The embeddings function over HTTP."""

    def __init__(self, url: str, model: str, http: Callable[[], httpx.AsyncClient]) -> None:
        self.url = url.rstrip("/") + "/v1/embeddings"
        self.model = model
        self.http = http

    def available(self) -> bool:
        return True

    async def embed(self, texts: list[str]) -> np.ndarray:
        import httpx
        import numpy as np

        try:
            response = await self.http().post(
                self.url,
                json={"input": texts, "model": self.model},
                headers=current_headers(),
                timeout=30.0,
            )
        except httpx.HTTPError as exc:
            raise EmbeddingsUnavailable(
                f"the embeddings function is unreachable: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise EmbeddingsUnavailable(f"the embeddings function answered {response.status_code}")
        try:
            body = msgspec.json.decode(response.content, type=_EmbeddingsResponse)
        except msgspec.DecodeError:
            raise EmbeddingsUnavailable("the embeddings function answered with an unexpected body") from None
        if len(body.data) != len(texts):
            raise EmbeddingsUnavailable(f"asked for {len(texts)} embeddings, got {len(body.data)}")
        ordered = sorted(body.data, key=lambda item: item.index)
        return normalized(np.asarray([item.embedding for item in ordered], dtype=np.float32))


class LocalEmbedder:
    """The model in this process (the ONNX export or sentence-transformers), loaded on first use."""

    def __init__(self, model: str, backend: str = "auto") -> None:
        self.model = model
        self.backend = backend
        self._model: EmbeddingModel | None = None
        self._failed: str | None = None

    def available(self) -> bool:
        if self._failed is not None:
            return False
        from common.embedding_model import choose_backend

        # find_spec, not import: importing torch takes seconds and must not block the event loop.
        onnx = choose_backend(self.model, "cpu", self.backend) == "onnx"
        library = "onnxruntime" if onnx else "sentence_transformers"
        if importlib.util.find_spec(library) is None:
            self._failed = f"{library} is not installed"
            return False
        return True

    def _load(self) -> EmbeddingModel:
        # The shared loader in common/: one copy of a model per process, whichever function asks.
        if self._model is None:
            if self._failed is not None:
                raise EmbeddingsUnavailable(self._failed)
            from common.embedding_model import load_model

            try:
                self._model = load_model(self.model, "cpu", self.backend)
            except Exception as exc:  # any load failure (missing files, offline hub) means no embeddings
                self._failed = f"cannot load embedding model {self.model!r}: {type(exc).__name__}"
                log.warning(self._failed)
                raise EmbeddingsUnavailable(self._failed) from None
        return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._load().encode(texts, batch_size=64)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self._encode, texts)


def make_embedder(
    embeddings_url: str | None, model: str, http: Callable[[], httpx.AsyncClient], backend: str = "auto"
) -> Embedder:
    if embeddings_url:
        return RemoteEmbedder(embeddings_url, model, http)
    return LocalEmbedder(model, backend)
