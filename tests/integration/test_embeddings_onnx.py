"""The torch-free ONNX backend: `victor embeddings export`, its vectors beside sentence-transformers',
search with either backend, and the model's names as OpenAI clients use them."""

# ruff: noqa: F811 - pytest fixtures imported from tests.support.embeddings

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from common.embedding_model import (
    EmbeddingModel,
    check_model_source,
    choose_backend,
    export_of,
    gpu_present,
    load_model,
)
from common.settings import SettingsError
from eventing.cli.main import main
from tests.support.embeddings import (  # noqa: F401 - fixtures
    FIXTURE_REPO,
    SEARCH_EXPECTATIONS,
    copy_code_repo,
    embedding_settings,
    embeddings_app,
    minilm,
    minilm_directory,
    minilm_export,
    wait_started,
)
from tests.support.servers import running

# The first test also exports the model (the session fixture): minutes on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
QUERIES = SEARCH_EXPECTATIONS


def many_texts() -> list[str]:
    """Every five lines of the fixture repository's text files, and texts of one word to past the window."""
    texts = []
    for path in sorted(FIXTURE_REPO.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".md", ".yaml", ".toml", ".txt", ".js", ".go"}:
            lines = path.read_text().splitlines()
            texts += ["\n".join(lines[n : n + 5]) for n in range(0, len(lines), 5)]
    texts += [f"item {n}: " + "resize the thumbnail cache " * (n % 90) for n in range(250)]
    texts += ["a", "  spaces around  ", "Ünïcödé, emoji 🚀\tand tabs"]
    return [text for text in texts if text.strip()]


def test_the_onnx_backend_gives_sentence_transformers_vectors_on_many_texts(
    minilm: EmbeddingModel, minilm_export: str
) -> None:
    onnx = load_model(minilm_export, "cpu", "onnx")
    assert (onnx.backend, onnx.id, onnx.dimension, onnx.max_tokens) == ("onnx", "all-MiniLM-L6-v2", 384, 256)
    texts = many_texts()
    assert len(texts) >= 300
    exported, expected = onnx.encode(texts, batch_size=32), minilm.encode(texts, batch_size=32)
    assert float(np.min(np.sum(exported * expected, axis=1))) >= 0.9999
    assert float(np.max(np.abs(np.linalg.norm(exported, axis=1) - 1))) < 1e-5
    assert onnx.count_tokens(texts) == minilm.count_tokens(texts)
    # Padding in a batch changes nothing: each text alone gives its row of the batch.
    alone = np.vstack([onnx.encode([text]) for text in texts[:20]])
    assert float(np.max(np.abs(alone - exported[:20]))) < 1e-5


def test_the_export_computes_the_models_own_pooling_and_normalisation(minilm_export: str) -> None:
    from sentence_transformers import SentenceTransformer

    exported = export_of(minilm_export)
    assert exported is not None
    pooling = json.loads((Path(minilm_directory()) / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    assert (exported.pooling, exported.normalize, exported.max_seq_length) == (["mean"], True, 256)
    assert exported.modules == ["Transformer", "Pooling", "Normalize"]
    # Mean over the unpadded tokens sentence-transformers' transformer gives, then unit length.
    model = SentenceTransformer(minilm_directory(), device="cpu")
    texts = ["def hash_password(raw): return bcrypt(raw)", "refund a card payment", "x " * 400]
    tokens = model.encode(texts, output_value="token_embeddings", convert_to_numpy=False)
    pooled = np.vstack([token.numpy().mean(axis=0) for token in tokens])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    assert float(np.max(np.abs(load_model(minilm_export, "cpu", "onnx").encode(texts) - pooled))) < 1e-5


def test_the_onnx_path_imports_neither_torch_nor_transformers(
    minilm: EmbeddingModel, minilm_export: str
) -> None:
    code = (
        "import json, sys, functions.embeddings.app\n"
        "from common.embedding_model import load_model\n"
        f"model = load_model({minilm_export!r})\n"
        "vector = model.encode(['where are passwords hashed'])[0]\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(json.dumps({'backend': model.backend, 'heavy': heavy, 'vector': vector.tolist()}))\n"
    )
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=environ
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert (answer["backend"], answer["heavy"]) == ("torch" if gpu_present() else "onnx", [])
    expected = minilm.encode(["where are passwords hashed"])[0]
    assert float(np.dot(answer["vector"], expected)) >= 0.9999


def test_auto_picks_onnx_for_an_export_on_the_cpu_and_sentence_transformers_otherwise(
    minilm_export: str,
) -> None:
    assert choose_backend(minilm_export, "cpu") == "onnx"
    assert choose_backend(minilm_export, "auto") == ("torch" if gpu_present() else "onnx")
    assert choose_backend(minilm_export, "cuda") == "torch"
    assert choose_backend(minilm_export, "cpu", "torch") == "torch"
    assert choose_backend(minilm_directory(), "cpu") == "torch"  # no export there
    assert load_model(minilm_export, "cpu", "torch").backend == "torch"  # the export keeps the weights


def test_the_onnx_backend_without_an_export_stops_start_up_naming_the_setting() -> None:
    with pytest.raises(SettingsError) as refused:
        check_model_source(minilm_directory(), "onnx")
    assert str(refused.value) == (
        f"VICTOR_EMBEDDING_MODEL: {minilm_directory()!r} is not a directory holding an ONNX export, which"
        " VICTOR_EMBEDDING_BACKEND=onnx needs; write one with `victor embeddings export DIR` and point"
        " the setting at DIR"
    )


def test_export_into_a_directory_that_is_not_empty_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kept.txt").write_text("mine\n")
    monkeypatch.setenv("VICTOR_EMBEDDING_MODEL", minilm_directory())
    assert main(["embeddings", "export", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"victor: {tmp_path} exists and is not an empty directory\n"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


async def search_paths(http: httpx.AsyncClient, collection: str) -> dict[str, list[str]]:
    indexed = (await http.post("/v1/index", json={"path": ".", "collection": collection})).json()
    assert indexed.get("files_indexed") == 35, indexed
    found = {}
    for query in QUERIES:
        body = {"query": query, "collection": collection, "k": 10}
        found[query] = [r["path"] for r in (await http.post("/v1/search", json=body)).json()["results"]]
    return found


async def test_search_finds_the_same_files_with_either_backend(embeddings_app, minilm_export: str) -> None:
    results = {}
    # Different model names, so neither backend reads the other's vectors from the Redis cache.
    for backend, model in (("onnx", minilm_export), ("torch", minilm_directory())):
        app, settings = embeddings_app(VICTOR_EMBEDDING_MODEL=model, VICTOR_EMBEDDING_BACKEND=backend)
        copy_code_repo(settings.workspace_dir)
        async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=300) as http:
            await wait_started(http)
            results[backend] = await search_paths(http, backend)
    for backend, found in results.items():
        recall = sum(QUERIES[query] in paths for query, paths in found.items()) / len(QUERIES)
        assert recall == 1.0, (backend, found)
        assert [paths[0] for paths in found.values()] == list(QUERIES.values()), backend
    assert results["onnx"] == results["torch"]


async def test_openai_clients_list_the_short_id_and_may_use_it_or_the_configured_name(
    embeddings_app, minilm_export: str
) -> None:
    app, _settings = embeddings_app(VICTOR_EMBEDDING_MODEL=minilm_export)
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        await wait_started(http)
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        listed = await client.models.list()
        assert [(m.id, m.object, m.owned_by) for m in listed.data] == [
            ("all-MiniLM-L6-v2", "model", "victor")
        ]
        # The short id, the configured directory and the model it was exported from all name it.
        for name in ("all-MiniLM-L6-v2", minilm_export, minilm_directory()):
            answer = await client.embeddings.create(model=name, input="hello", encoding_format="float")
            assert (answer.model, len(answer.data[0].embedding)) == ("all-MiniLM-L6-v2", 384)
        with pytest.raises(openai.NotFoundError) as refused:
            await client.embeddings.create(model="text-embedding-3-small", input="hello")
        assert refused.value.body == {
            "message": "the model 'text-embedding-3-small' does not exist here;"
            " this function serves 'all-MiniLM-L6-v2'",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
