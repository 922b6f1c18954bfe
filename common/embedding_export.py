"""`victor embeddings export`: a sentence-transformers model written out for the torch-free ONNX backend.

sentence-transformers loads the model (hub name or directory) and saves it as it saves any
model (config, tokenizer, pooling), then the whole module chain, the transformer and the
model's own pooling, Dense and Normalize modules, is traced into one ONNX graph from token
ids to the sentence embedding, so the ONNX path computes exactly what the model computes.
Beside it goes `onnx/victor_export.json` (`ModelExport`): the graph's inputs, the tokenizer's
padding and truncation, the window, the name. The export is checked before it is kept: the
graph's vectors must match sentence-transformers' on a padded batch of mixed lengths.

This is the only place that needs torch (the `torch` extra); serving the result needs
onnxruntime and tokenizers only (`common.embedding_model`).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from common.embedding_model import (
    EXPORT_GRAPH,
    EXPORT_SETTINGS,
    MODEL_VARIABLE,
    ModelExport,
    model_id,
    open_export,
)

# Weight files only the torch backend reads; `onnx_only` leaves them out.
TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
SUPPORTED_MODULES = {"Transformer", "Pooling", "Dense", "Normalize"}
# Texts the export is checked on: lengths that pad against each other, one past the window.
CHECK_TEXTS = [
    "def parse_date(text): return datetime.strptime(text, '%Y-%m-%d')",
    "a",
    "Retries back off exponentially, from half a second doubling to thirty seconds. " * 40,
    "  leading and trailing spaces  ",
    "Ünïcödé, emoji 🚀 and\ttabs\nand new lines",
]
MIN_COSINE = 0.9999
VERSIONED = ("sentence-transformers", "transformers", "torch")


class ExportError(Exception):
    """The model cannot be exported (one line for the CLI)."""


def export_model(source: str, destination: Path, *, onnx_only: bool = False) -> ModelExport:
    """Export `source` into `destination` (created; must be empty or absent); returns what was written."""
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ExportError(
            "exporting needs torch and sentence-transformers: pip install 'victor-functions[torch]'"
        ) from None
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ExportError(f"{destination} exists and is not an empty directory")
    try:
        model = SentenceTransformer(str(Path(source).expanduser()) if Path(source).expanduser().is_dir()
                                    else source, device="cpu")  # fmt: skip
    except Exception as exc:  # any loader failure is one line naming the setting
        failure = f"{type(exc).__name__}: {exc}"
        raise ExportError(f"{MODEL_VARIABLE}={source!r} cannot be loaded: {failure}") from None
    modules = [type(module).__name__ for module in model]
    unsupported = [name for name in modules if name not in SUPPORTED_MODULES]
    if unsupported or modules[:1] != ["Transformer"]:
        raise ExportError(
            f"{source!r} has modules {modules}; the ONNX export supports a Transformer followed by"
            f" {sorted(SUPPORTED_MODULES - {'Transformer'})}"
        )
    pooling = next((module for module in model if type(module).__name__ == "Pooling"), None)
    if pooling is not None and not getattr(pooling, "include_prompt", True):
        raise ExportError(f"{source!r} pools without its prompt tokens, which the ONNX export cannot trace")
    prompt = model.prompts.get(model.default_prompt_name or "", "") if model.prompts else ""
    tokenizer = model.tokenizer
    inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids")
              if name in tokenizer.model_input_names]  # fmt: skip
    settings = ModelExport(
        name=model_id(source),
        source=source,
        dimension=int(model.get_embedding_dimension() or 0),
        max_seq_length=int(model.max_seq_length or 512),
        inputs=inputs,
        pooling=_pooling_modes(pooling),
        normalize="Normalize" in modules,
        do_lower_case=bool(getattr(model[0], "do_lower_case", False)),
        prompt=prompt or "",
        padding_side=tokenizer.padding_side,
        truncation_side=tokenizer.truncation_side,
        pad_id=int(tokenizer.pad_token_id or 0),
        pad_type_id=int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        pad_token=str(tokenizer.pad_token or "[PAD]"),
        modules=modules,
        versions={name: importlib.metadata.version(name) for name in VERSIONED},
    )
    # Written beside the destination, then moved: a failed export leaves nothing half-made.
    destination.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=destination.parent))
    try:
        model.save(str(work))
        (work / "onnx").mkdir(exist_ok=True)
        _trace(torch, model, settings, work / EXPORT_GRAPH)
        (work / EXPORT_SETTINGS).write_bytes(msgspec.json.format(msgspec.json.encode(settings)) + b"\n")
        _check(model, str(work))
        if onnx_only:
            for name in TORCH_WEIGHTS:
                (work / name).unlink(missing_ok=True)
        # Readable by the unprivileged user that serves it (mkdtemp and the weight writer make 0700/0600).
        for path in [work, *work.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        if destination.exists():
            destination.rmdir()
        work.rename(destination)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return settings


def _pooling_modes(pooling: Any) -> list[str]:
    if pooling is None:
        return []
    mode = pooling.pooling_mode
    return [mode] if isinstance(mode, str) else list(mode)


def _trace(torch: Any, model: Any, settings: ModelExport, path: Path) -> None:
    """The module chain traced from token ids to `sentence_embedding`, batch and length dynamic."""

    class Chain(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            features = dict(zip(settings.inputs, tensors, strict=True))
            return self.model(features)["sentence_embedding"]

    # A padded batch, so the attention mask is part of the trace (an all-ones sample lets
    # transformers drop the mask, and the graph would then ignore padding).
    sample = model.tokenizer(
        CHECK_TEXTS[:2],
        padding=True,
        truncation=True,
        max_length=settings.max_seq_length,
        return_tensors="pt",
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in settings.inputs}
    # The tracer warns of every shape test it freezes; `_check` is what verifies the graph.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Chain().eval(),
            tuple(sample[name] for name in settings.inputs),
            str(path),
            input_names=settings.inputs,
            output_names=[settings.output],
            dynamic_axes={**axes, settings.output: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _check(model: Any, directory: str) -> None:
    """Refuse an export whose vectors differ from sentence-transformers' (cosine below MIN_COSINE)."""
    expected = np.asarray(model.encode(CHECK_TEXTS, convert_to_numpy=True, show_progress_bar=False))
    exported = open_export(directory).encode(CHECK_TEXTS)
    norms = np.linalg.norm(expected, axis=1) * np.linalg.norm(exported, axis=1)
    cosine = float(np.min(np.sum(expected * exported, axis=1) / norms))
    if cosine < MIN_COSINE:
        raise ExportError(f"the exported graph disagrees with sentence-transformers (cosine {cosine:.6f})")
