"""The embeddings function over real HTTP, with the real model, Redis, PostgreSQL and LanceDB."""

# ruff: noqa: F811 - pytest fixtures imported from tests.support.embeddings

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from common.cloudevents import from_http, new_event, to_binary
from common.metrics import REGISTRY
from eventing.schemas.embeddings import (
    EMBEDDINGS_REQUESTED,
    INDEX_REQUESTED,
    SEARCH_REQUESTED,
    EmbeddingsRequested,
    IndexRequested,
    SearchRequested,
)
from tests.support.embeddings import (  # noqa: F401 - fixtures
    SEARCH_EXPECTATIONS,
    copy_code_repo,
    embedding_settings,
    embeddings_app,
    minilm,
    model_batch_count,
    model_texts,
    wait_started,
)
from tests.support.servers import running

pytestmark = pytest.mark.slow


def workspace_of(settings) -> Path:
    return settings.workspace_dir


async def test_openai_client_gets_the_models_vectors_in_float_and_base64(embeddings_app, minilm) -> None:
    app, _settings = embeddings_app()
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        await wait_started(http)
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        texts = ["def add(a, b): return a + b", "the cat sat on the mat"]
        expected = minilm.encode(texts)
        as_base64 = await client.embeddings.create(model=minilm.name, input=texts)  # the client's default
        as_float = await client.embeddings.create(model=minilm.name, input=texts, encoding_format="float")
        for response in (as_base64, as_float):
            assert response.model == minilm.id == "all-MiniLM-L6-v2"
            assert [d.index for d in response.data] == [0, 1]
            assert np.allclose(np.array([d.embedding for d in response.data]), expected, atol=1e-5)
            assert response.usage.prompt_tokens == sum(minilm.count_tokens(texts))
            assert response.usage.total_tokens == response.usage.prompt_tokens
        single = await client.embeddings.create(model=minilm.name, input="one text", encoding_format="float")
        assert len(single.data) == 1 and len(single.data[0].embedding) == 384
        raw = (await http.post("/v1/embeddings", json={"input": "hello"})).json()
        assert raw["object"] == "list" and raw["data"][0]["object"] == "embedding"


async def test_bad_embedding_requests_are_refused_naming_the_limit(embeddings_app, minilm) -> None:
    app, _settings = embeddings_app(VICTOR_EMBEDDING_MAX_INPUTS="3")
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        await wait_started(http)

        async def refused(body: object) -> tuple[int, str]:
            # OpenAI's error envelope, as OpenAI's clients read it.
            response = await http.post("/v1/embeddings", json=body)
            return response.status_code, response.json()["error"]["message"]

        assert await refused({"input": []}) == (
            400,
            "input is empty; give a string or a list of at least one string",
        )
        assert await refused({"input": ""}) == (
            400,
            "input[0] is an empty string; every input must hold text",
        )
        status, detail = await refused({"input": ["a", "b", "c", "d"]})
        assert (status, detail) == (
            400,
            "input has 4 items; at most 3 are allowed (VICTOR_EMBEDDING_MAX_INPUTS)",
        )
        status, detail = await refused({"input": "word " * 300})
        assert status == 400 and detail.startswith("input[0] has 302 tokens; at most 256 are allowed")
        assert await refused({"input": "x", "model": "text-embedding-3-small"}) == (
            404,
            "the model 'text-embedding-3-small' does not exist here; this function serves 'all-MiniLM-L6-v2'",
        )
        status, _ = await refused({"input": "x", "encoding_format": "int8"})
        assert status == 422
        status, _ = await refused({"input": [1, 2, 3]})
        assert status == 422


async def test_plain_word_queries_find_the_right_file_first(embeddings_app) -> None:
    app, settings = embeddings_app()
    copy_code_repo(workspace_of(settings))
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
        await wait_started(http)
        indexed = (await http.post("/v1/index", json={"path": ".", "collection": "shop"})).json()
        # Every fixture file; not what its .gitignore excludes (build/, *.log, secrets/*), nor the binary.
        assert indexed["files_indexed"] == 35
        assert indexed["skipped"] == {"shopfront/media/logo.png": "binary"}
        for mode in ("vector", "hybrid"):
            for query, path in SEARCH_EXPECTATIONS.items():
                body = {"query": query, "collection": "shop", "k": 5, "mode": mode}
                results = (await http.post("/v1/search", json=body)).json()["results"]
                assert results[0]["path"] == path, (mode, query, [r["path"] for r in results])
        found = (await http.post("/v1/search", json={"query": "hash password", "collection": "shop"})).json()
        paths = {r["path"] for r in found["results"]}
        assert not any(p.startswith(("build/", "secrets/api")) or p.endswith(".log") for p in paths)
        # passwords.py (273 tokens) is two chunks that fit MiniLM's 256, cut between its two functions.
        top = [(r["path"], r["start_line"], r["end_line"], r["language"]) for r in found["results"][:2]]
        assert sorted(top) == [
            ("shopfront/auth/passwords.py", 1, 16, "python"),
            ("shopfront/auth/passwords.py", 17, 21, "python"),
        ]
        [first] = [r["text"] for r in found["results"][:2] if r["start_line"] == 1]
        assert "def hash_password" in first and "def verify_password" not in first
        filtered = await http.post(
            "/v1/search",
            json={
                "query": "hash password",
                "collection": "shop",
                "filter": {"path_prefix": "shopfront/payments/"},
            },
        )
        assert {r["path"] for r in filtered.json()["results"]} == {
            "shopfront/payments/stripe_client.py",
            "shopfront/payments/invoices.py",
        }
        again = (await http.post("/v1/index", json={"path": ".", "collection": "shop"})).json()
        assert (again["files_indexed"], again["files_unchanged"], again["chunks_added"]) == (0, 35, 0)


async def test_reindexing_an_edited_file_replaces_its_stale_chunks(embeddings_app) -> None:
    app, settings = embeddings_app(VICTOR_EMBEDDING_CHUNK_LINES="10", VICTOR_EMBEDDING_CHUNK_OVERLAP="2")
    workspace = workspace_of(settings)
    notes = workspace / "notes.md"
    notes.write_text("\n".join(f"Line {n}: the quarterly zebra migration report." for n in range(1, 26)))
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        first = (await http.post("/v1/index", json={"path": "notes.md"})).json()
        assert (first["chunks_added"], first["total_chunks"]) == (3, 3)  # lines 1-10, 9-18, 17-25
        notes.write_text("Our office plants need watering every Tuesday.\nThe ficus prefers shade.\n")
        second = (await http.post("/v1/index", json={"path": "notes.md"})).json()
        assert (second["files_indexed"], second["chunks_removed"], second["chunks_added"]) == (1, 3, 1)
        assert second["total_chunks"] == 1
        results = (await http.post("/v1/search", json={"query": "zebra migration report", "k": 10})).json()
        assert [(r["path"], r["start_line"], r["end_line"]) for r in results["results"]] == [
            ("notes.md", 1, 2)
        ]
        assert "zebra" not in results["results"][0]["text"]


async def test_a_collection_built_by_another_model_is_refused(embeddings_app, minilm, tmp_path) -> None:
    app, settings = embeddings_app()
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        body = {"documents": [{"id": "a", "text": "alpha"}], "collection": "docs"}
        assert (await http.post("/v1/index", json=body)).status_code == 200
    # The same weights under another name is, for the store, another model: its vectors must not mix.
    other = tmp_path / "other-model"
    other.symlink_to(minilm.name, target_is_directory=True)
    other_app, settings = embeddings_app(
        VICTOR_EMBEDDING_MODEL=str(other), LANCEDB_URI=str(settings.lancedb_uri)
    )
    async with running(other_app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        refused = await http.post(
            "/v1/index", json={"documents": [{"id": "b", "text": "beta"}], "collection": "docs"}
        )
        assert refused.status_code == 409
        assert refused.json()["detail"].startswith(
            f"collection 'docs' holds vectors of model {minilm.name!r}"
        )
        search = await http.post("/v1/search", json={"query": "alpha", "collection": "docs"})
        assert search.status_code == 409
        fresh = await http.post(
            "/v1/index", json={"documents": [{"id": "b", "text": "beta"}], "collection": "new"}
        )
        assert fresh.status_code == 200


async def test_lancedb_answers_after_a_restart_on_the_same_uri(embeddings_app) -> None:
    app, _settings = embeddings_app()
    docs = [
        {
            "id": "kb/vpn.md",
            "text": "Connect to the office VPN with the WireGuard client.",
            "metadata": {"team": "it"},
        },
        {"id": "kb/lunch.md", "text": "The canteen serves lunch from noon until two."},
    ]
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        assert (await http.post("/v1/index", json={"documents": docs, "collection": "kb"})).status_code == 200
    async with running(embeddings_app()[0]) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        found = (
            await http.post("/v1/search", json={"query": "remote network access", "collection": "kb"})
        ).json()
        assert [r["path"] for r in found["results"]] == ["kb/vpn.md", "kb/lunch.md"]
        assert found["results"][0]["metadata"] == {"team": "it"}
        missing = await http.post("/v1/search", json={"query": "x", "collection": "nothing-here"})
        assert missing.status_code == 404


async def test_concurrent_single_texts_are_coalesced_and_match_one_batch_call(embeddings_app, minilm) -> None:
    app, _settings = embeddings_app()
    texts = [f"request {n} about topic {uuid.uuid4().hex}" for n in range(64)]
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        texts_before, batches_before = model_texts(), model_batch_count()
        responses = await asyncio.gather(*(http.post("/v1/embeddings", json={"input": t}) for t in texts))
        texts_after, batches_after = model_texts(), model_batch_count()
        concurrent = np.array([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
        batch = np.array(
            [
                d["embedding"]
                for d in (await http.post("/v1/embeddings", json={"input": texts})).json()["data"]
            ]
        )
    assert np.allclose(concurrent, batch, atol=1e-6)
    assert np.allclose(concurrent, minilm.encode(texts), atol=1e-5)
    assert texts_after - texts_before == 64
    assert batches_after - batches_before < 64  # coalesced: fewer model batches than requests


def event_request(event) -> tuple[dict[str, str], bytes]:
    return to_binary(event)


async def test_each_requested_event_gets_its_completed_reply_and_redelivery_does_no_work(
    embeddings_app, minilm
) -> None:
    app, _settings = embeddings_app()
    texts = [f"event text {uuid.uuid4().hex}", f"another {uuid.uuid4().hex}"]
    source = "/tests/embeddings"
    requests = [
        new_event(EMBEDDINGS_REQUESTED, source, EmbeddingsRequested(input=texts)),
        new_event(INDEX_REQUESTED, source, IndexRequested(documents=[], collection="ev")),
    ]
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        before = model_texts()
        headers, body = to_binary(requests[0])
        first = await http.post("/", headers=headers, content=body)
        assert first.status_code == 200
        reply = from_http(first.headers, first.content, max_bytes=1 << 24)
        assert (reply.type, reply.subject) == ("ai.victor.embeddings.completed", requests[0].id)
        data = reply.json()
        assert np.allclose(np.array(data["embeddings"]), minilm.encode(texts), atol=1e-5)
        assert model_texts() - before == 2
        redelivered = await http.post("/", headers=headers, content=body)
        assert from_http(redelivered.headers, redelivered.content, max_bytes=1 << 24).id == reply.id
        assert model_texts() - before == 2

        headers, body = to_binary(requests[1])
        poison = await http.post("/", headers=headers, content=body)
        assert poison.status_code == 422 and "documents is empty" in poison.json()["detail"]

        index_event = new_event(
            INDEX_REQUESTED,
            source,
            IndexRequested(
                documents=[{"id": "d1", "text": f"solar panels {uuid.uuid4().hex}"}], collection="ev"
            ),
        )
        headers, body = to_binary(index_event)
        indexed = await http.post("/", headers=headers, content=body)
        index_reply = from_http(indexed.headers, indexed.content, max_bytes=1 << 24)
        assert index_reply.type == "ai.victor.index.completed" and index_reply.subject == index_event.id
        assert index_reply.json()["chunks_added"] == 1
        after_index = model_texts()
        again = await http.post("/", headers=headers, content=body)
        assert from_http(again.headers, again.content, max_bytes=1 << 24).id == index_reply.id
        assert model_texts() == after_index

        search_event = new_event(
            SEARCH_REQUESTED, source, SearchRequested(query="renewable energy", collection="ev")
        )
        headers, body = to_binary(search_event)
        searched = await http.post("/", headers=headers, content=body)
        search_reply = from_http(searched.headers, searched.content, max_bytes=1 << 24)
        assert search_reply.type == "ai.victor.search.completed" and search_reply.subject == search_event.id
        assert [r["path"] for r in search_reply.json()["results"]] == ["d1"]


async def test_startup_probe_reports_a_model_that_cannot_load(embeddings_app, tmp_path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    app, _settings = embeddings_app(VICTOR_EMBEDDING_MODEL=str(broken))
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/health/live")).status_code == 200
        body: dict[str, str] = {}
        for _ in range(400):
            response = await http.get("/health/startup")
            body = response.json()
            if body.get("status") == "failed":
                break
            assert response.status_code == 503
            await asyncio.sleep(0.05)
        assert body["status"] == "failed"
        assert f"VICTOR_EMBEDDING_MODEL={str(broken)!r} cannot be loaded" in body["error"]
        refused = await http.post("/v1/embeddings", json={"input": "x"})
        assert refused.status_code == 503


async def test_a_collection_past_the_threshold_gets_a_vector_index_and_still_finds_exact_matches(
    embeddings_app,
) -> None:
    app, _ = embeddings_app(VICTOR_VECTOR_INDEX_THRESHOLD="256")
    topics = ["invoice", "kubernetes", "password", "thumbnail", "migration", "websocket", "csv", "retry"]
    documents = [
        {"id": f"doc-{n}", "text": f"note {n}: {topics[n % len(topics)]} number {n} {uuid.uuid4().hex[:6]}"}
        for n in range(300)
    ]
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=300) as http:
        await wait_started(http)
        small = (
            await http.post("/v1/index", json={"documents": documents[:200], "collection": "big"})
        ).json()
        assert (small["total_chunks"], small["vector_index"]) == (200, False)
        grown = (await http.post("/v1/index", json={"documents": documents, "collection": "big"})).json()
        assert (grown["files_indexed"], grown["files_unchanged"]) == (100, 200)
        assert (grown["total_chunks"], grown["vector_index"]) == (300, True)
        for n, mode in ((7, "vector"), (150, "hybrid"), (299, "vector")):
            body = {"query": documents[n]["text"], "collection": "big", "k": 3, "mode": mode}
            results = (await http.post("/v1/search", json=body)).json()["results"]
            assert results[0]["path"] == f"doc-{n}"


async def test_texts_seen_before_come_from_the_redis_cache_not_the_model(embeddings_app, minilm) -> None:
    app, _ = embeddings_app()
    seen, fresh = f"cached text {uuid.uuid4().hex}", f"new text {uuid.uuid4().hex}"
    hits = ("victor_cache_requests_total", {"cache": "embeddings", "result": "hit"})
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        await http.post("/v1/embeddings", json={"input": [seen]})
        texts_before, hits_before = model_texts(), REGISTRY.get_sample_value(*hits) or 0.0
        both = (await http.post("/v1/embeddings", json={"input": [seen, fresh, seen]})).json()
        assert model_texts() - texts_before == 1  # only the new text reached the model
        assert (REGISTRY.get_sample_value(*hits) or 0.0) - hits_before == 1
    vectors = np.array([d["embedding"] for d in both["data"]])
    assert np.allclose(vectors, minilm.encode([seen, fresh, seen]), atol=1e-5)


async def test_reindexing_a_directory_drops_files_that_are_gone_but_keeps_documents(embeddings_app) -> None:
    app, settings = embeddings_app()
    docs = settings.workspace_dir / "docs"
    docs.mkdir()
    (docs / "keep.md").write_text("How to rotate the on-call pager schedule.\n")
    (docs / "delete.md").write_text("Steps to renew the TLS certificates of the load balancer.\n")
    (docs / "hide.md").write_text("Notes about the espresso machine descaling routine.\n")
    (settings.workspace_dir / "top.md").write_text(
        "Outside the docs directory: the office wifi password policy.\n"
    )
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        assert (await http.post("/v1/index", json={"path": "."})).json()["files_indexed"] == 4
        inline = {"documents": [{"id": "docs/inline", "text": "An inline note about certificates."}]}
        assert (await http.post("/v1/index", json=inline)).json()["total_chunks"] == 5
        (docs / "delete.md").unlink()
        (docs / ".gitignore").write_text("hide.md\n")
        again = (await http.post("/v1/index", json={"path": "docs"})).json()
        assert (again["files_indexed"], again["files_unchanged"], again["files_removed"]) == (1, 1, 2)
        assert (again["chunks_removed"], again["total_chunks"]) == (2, 4)  # keep, .gitignore, top, inline
        found = (await http.post("/v1/search", json={"query": "renew TLS certificates", "k": 10})).json()
        assert sorted(r["path"] for r in found["results"]) == [
            "docs/.gitignore",
            "docs/inline",
            "docs/keep.md",
            "top.md",
        ]


async def test_the_indexer_never_reads_secret_files_or_hard_links(embeddings_app, tmp_path: Path) -> None:
    app, settings = embeddings_app()
    workspace = workspace_of(settings)
    outside = tmp_path / "outside-secret.txt"
    outside.write_text("OUTSIDE-CANARY the database password is hunter2\n")
    (workspace / "app.py").write_text("def connect():\n    return 'database connection'\n")
    (workspace / ".env").write_text("DATABASE_PASSWORD=ENV-CANARY-hunter2\n")
    (workspace / "deploy").mkdir()
    (workspace / "deploy" / "server.pem").write_text("PEM-CANARY private key for the database\n")
    (workspace / "notes.txt").symlink_to(".env")
    os.link(outside, workspace / "linked.txt")
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
        await wait_started(http)
        indexed = (await http.post("/v1/index", json={"path": ".", "collection": "secrets"})).json()
        found = await http.post("/v1/search", json={"query": "database password", "collection": "secrets"})
    assert indexed["files_indexed"] == 1
    # notes.txt is a symlink to .env: the indexer takes a link's target once, and refuses that.
    assert set(indexed["skipped"]) == {".env", "deploy/server.pem", "linked.txt"}
    assert indexed["skipped"]["linked.txt"].startswith("'linked.txt' has 2 hard links")
    assert "secret file" in indexed["skipped"][".env"]
    assert "secret file" in indexed["skipped"]["deploy/server.pem"]
    assert {r["path"] for r in found.json()["results"]} == {"app.py"}
    assert "CANARY" not in found.text


def finished_index_runs(metrics: httpx.Response) -> float:
    """`victor_index_duration_seconds_count`: index runs that reached their end."""
    for line in metrics.text.splitlines():
        if line.startswith("victor_index_duration_seconds_count"):
            return float(line.split()[-1])
    return 0.0


async def test_indexing_with_progress_streams_reports_then_the_result_and_finishes_without_its_client(
    embeddings_app,
) -> None:
    app, settings = embeddings_app()
    copy_code_repo(workspace_of(settings))
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
        await wait_started(http)
        body = {"path": ".", "collection": "progress", "progress": True}
        async with http.stream("POST", "/v1/index", json=body) as response:
            assert response.headers["content-type"] == "application/x-ndjson"
            status_url = response.headers["location"]
            items = [json.loads(line) async for line in response.aiter_lines() if line.strip()]
        *reports, final = items
        assert [r["event"] for r in reports] == ["progress"] * len(reports)
        # Every line names the run's job, which a client that lost the stream can follow.
        job_id = final["job_id"]
        assert status_url == f"/v1/index/jobs/{job_id}"
        assert {r["job_id"] for r in reports} == {job_id}
        job = (await http.get(status_url)).json()
        assert (job["state"], job["result"], job["progress"]) == ("completed", final["result"], reports[-1])
        assert (
            reports[0]["chunks_done"] == 0 and reports[-1]["chunks_done"] == reports[-1]["chunks_total"] > 0
        )
        assert [r["chunks_done"] for r in reports] == sorted(r["chunks_done"] for r in reports)
        assert (reports[-1]["files_total"], reports[-1]["files_changed"]) == (35, 35)
        assert final["event"] == "done"
        assert (final["result"]["files_indexed"], final["result"]["chunks_added"]) == (
            35,
            reports[-1]["chunks_total"],
        )

        # A client that stops reading at the first report: the run still indexes everything. Its end
        # is seen in the function's own metrics (no other index request runs meanwhile).
        runs_before = finished_index_runs(await http.get("/metrics"))
        body = {"path": ".", "collection": "walked-away", "progress": True}
        async with http.stream("POST", "/v1/index", json=body) as response:
            async for _line in response.aiter_lines():
                break
        for _ in range(600):
            if finished_index_runs(await http.get("/metrics")) == runs_before + 1:
                break
            await asyncio.sleep(0.1)
        again = (await http.post("/v1/index", json={"path": ".", "collection": "walked-away"})).json()
        assert (again["files_indexed"], again["files_unchanged"]) == (0, 35)

        bad = await http.post("/v1/index", json={"path": ".", "collection": "no/slash", "progress": True})
        assert (bad.status_code, bad.json()["error"]) == (422, "invalid_request")


async def test_indexing_a_tree_with_a_name_that_is_not_utf8_indexes_the_rest_and_reports_it(
    embeddings_app,
) -> None:
    app, settings = embeddings_app()
    root = workspace_of(settings) / "latin1"
    root.mkdir()
    (root / "good.md").write_text("The lighthouse keeper logs every passing ship.\n")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.md"), "w") as bad:
        bad.write("A file whose name is Latin-1.\n")
    os.mkdir(os.path.join(os.fsencode(root), b"r\xe9sum\xe9"))
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await wait_started(http)
        response = await http.post("/v1/index", json={"path": "latin1", "collection": "latin1"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["files_indexed"] == 1
    assert result["skipped"] == {
        "latin1/caf\\xe9.md": "name is not UTF-8",
        "latin1/r\\xe9sum\\xe9": "name is not UTF-8",
    }


async def test_reindexing_swaps_a_files_chunks_at_once_while_searches_run(embeddings_app) -> None:
    import lancedb

    app, settings = embeddings_app(VICTOR_EMBEDDING_CHUNK_LINES="4", VICTOR_EMBEDDING_CHUNK_OVERLAP="0")
    notes = workspace_of(settings) / "notes.md"
    # Each edition of the file: its own word on every line, and its own number of 4-line chunks.
    editions = {"alpha": 24, "bravo": 12, "charlie": 32, "delta": 20, "echo": 28}

    def edition(word: str) -> str:
        return "\n".join(f"{word} note {n}: the {word} team's weekly report." for n in range(editions[word]))

    seen: list[tuple[str, ...]] = []
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
        await wait_started(http)
        notes.write_text(edition("alpha"))
        await http.post("/v1/index", json={"path": "notes.md", "collection": "notes"})

        async def search_until(done: asyncio.Event) -> None:
            body = {"query": "weekly report", "collection": "notes", "k": 100}
            while not done.is_set():
                results = (await http.post("/v1/search", json=body)).json()["results"]
                seen.append(tuple(sorted(r["text"].split()[0] for r in results)))

        for word in list(editions)[1:]:
            notes.write_text(edition(word))
            done = asyncio.Event()
            searches = [asyncio.create_task(search_until(done)) for _ in range(3)]
            indexed = (await http.post("/v1/index", json={"path": "notes.md", "collection": "notes"})).json()
            done.set()
            await asyncio.gather(*searches)
            assert (indexed["files_indexed"], indexed["total_chunks"]) == (1, editions[word] // 4)
    # Every search saw one whole edition: all its chunks, none of another's.
    assert seen
    for words in seen:
        assert len(set(words)) == 1 and len(words) == editions[words[0]] // 4, words
    # And so does every version of the table that a search could have read.
    table = lancedb.connect(settings.lancedb_uri).open_table("notes")
    for version in table.list_versions():
        table.checkout(version["version"])
        words = [text.split()[0] for text in table.to_arrow()["text"].to_pylist()]
        assert words == [] or (len(set(words)) == 1 and len(words) == editions[words[0]] // 4), words
