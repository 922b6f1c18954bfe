"""The embeddings function's settings and the model check that runs before serving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.embedding_model import check_model_source
from common.settings import SettingsError
from functions.embeddings.settings import EmbeddingSettings, load_embedding_settings


def test_defaults_and_overrides() -> None:
    assert load_embedding_settings({}) == EmbeddingSettings()
    custom = load_embedding_settings(
        {
            "VICTOR_EMBEDDING_MAX_BATCH_SIZE": "16",
            "VICTOR_EMBEDDING_MAX_WAIT_MS": "2.5",
            "VICTOR_INDEX_MAX_FILE_BYTES": "2MB",
            "VICTOR_INDEX_DRAIN_SECONDS": "30",
        }
    )
    assert (custom.max_batch_size, custom.max_wait_ms, custom.max_file_bytes) == (16, 2.5, 2 * 1024 * 1024)
    # A stopping replica waits this long for its index jobs: 240 s by default, within Knative's 300 s grace.
    assert (EmbeddingSettings().drain_seconds, custom.drain_seconds) == (240.0, 30.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"VICTOR_EMBEDDING_MAX_BATCH_SIZE": "0"},
            "VICTOR_EMBEDDING_MAX_BATCH_SIZE: expected an integer >= 1",
        ),
        ({"VICTOR_EMBEDDING_DEVICE": "tpu"}, "VICTOR_EMBEDDING_DEVICE: expected one of auto, cpu, cuda, mps"),
        (
            {"VICTOR_EMBEDDING_CHUNK_LINES": "10", "VICTOR_EMBEDDING_CHUNK_OVERLAP": "10"},
            "VICTOR_EMBEDDING_CHUNK_OVERLAP: expected an integer >= 0 and <= 9",
        ),
        ({"VICTOR_INDEX_DRAIN_SECONDS": "-1"}, "VICTOR_INDEX_DRAIN_SECONDS: expected a number >= 0.0"),
        (
            {"VICTOR_VECTOR_INDEX_TYPE": "LSH"},
            "VICTOR_VECTOR_INDEX_TYPE: expected one of IVF_HNSW_SQ, IVF_PQ",
        ),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_embedding_settings(env)
    assert str(raised.value).startswith(message)


def test_a_model_that_cannot_be_found_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    cases = {
        str(tmp_path / "missing"): "is not a directory holding a model",
        str(tmp_path): "holds no modules.json or config.json",
        "nobody/no-such-model": "is not in the local Hugging Face cache and HF_HUB_OFFLINE forbids",
        "a/b/c": "is neither a directory nor a hub name like org/model",
    }
    for source, problem in cases.items():
        with pytest.raises(SettingsError) as raised:
            check_model_source(source)
        assert str(raised.value).startswith(f"VICTOR_EMBEDDING_MODEL: {source!r} {problem}")
    (tmp_path / "modules.json").write_text("[]")
    check_model_source(str(tmp_path))


def test_the_shared_model_loader_imports_no_torch_until_a_model_is_loaded() -> None:
    # Both functions import it at start-up; torch and sentence-transformers take seconds to import.
    probe = (
        "import sys, common.embedding_model, functions.tools.text_embedder;"
        "print(sorted({'torch', 'sentence_transformers'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
