"""POST /v1/tools/select: keyword, semantic, hybrid, auto; vectors stored once; cached selections."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from common.settings import Settings
from functions.tools.selection import RRF_K
from tests.support.servers import running
from tests.support.tools import EmbeddingsServer, ToolsServer, local_model_path, tools_server


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


async def select(server: ToolsServer, query: str, strategy: str, k: int = 3) -> dict[str, Any]:
    response = await server.client.post(
        "/v1/tools/select", json={"query": query, "strategy": strategy, "k": k}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def names(selection: dict[str, Any]) -> list[str]:
    return [tool["name"] for tool in selection["tools"]]


def without_embeddings(make_settings: Callable[..., Settings], **env: str) -> Any:
    """The tools function with a model that cannot load and no embeddings function: keyword only."""
    return tools_server(make_settings, VICTOR_EMBEDDING_MODEL="/nonexistent/model", **env)


async def test_keyword_selection_without_embeddings(make_settings, offline) -> None:
    async with without_embeddings(make_settings) as server:
        grep = await select(
            server, f"search file contents for a regular expression {uuid.uuid4().hex}", "keyword"
        )
        auto = await select(server, f"show the commit history {uuid.uuid4().hex}", "auto")
        semantic = await server.client.post(
            "/v1/tools/select", json={"query": "commit history", "strategy": "semantic"}
        )
    assert names(grep)[0] == "grep"
    assert grep["tools"][0]["score"] > grep["tools"][1]["score"] > 0
    assert (auto["strategy"], auto["used"], names(auto)[0]) == ("auto", "keyword", "git_log")
    assert semantic.status_code == 503
    assert semantic.json()["detail"].startswith("semantic selection needs embeddings")


async def test_semantic_and_hybrid_selection_with_the_local_model(make_settings, offline) -> None:
    query = f"list files in a folder {uuid.uuid4().hex[:6]}"
    async with tools_server(make_settings, VICTOR_EMBEDDING_MODEL=local_model_path()) as server:
        keyword = await select(server, query, "keyword", k=11)
        semantic = await select(server, query, "semantic", k=11)
        hybrid = await select(server, query, "hybrid", k=11)
        auto = await select(server, f"show the commit history {uuid.uuid4().hex[:6]}", "auto")
        history = await select(server, "show the commit history", "semantic")
        computed = server.service.selector.vector_computations
    assert names(semantic)[0] == "list_directory"
    assert names(history)[0] == "git_log"
    assert -1 <= semantic["tools"][-1]["score"] < semantic["tools"][0]["score"] <= 1
    # hybrid is reciprocal rank fusion of the keyword ranking (tools scoring > 0) and the semantic ranking
    keyword_rank = {t["name"]: i for i, t in enumerate(keyword["tools"], 1) if t["score"] > 0}
    semantic_rank = {t["name"]: i for i, t in enumerate(semantic["tools"], 1)}
    expected = {
        name: round(
            1 / (RRF_K + semantic_rank[name])
            + (1 / (RRF_K + keyword_rank[name]) if name in keyword_rank else 0),
            6,
        )
        for name in semantic_rank
    }
    assert {t["name"]: t["score"] for t in hybrid["tools"]} == pytest.approx(expected, abs=2e-6)
    assert names(hybrid)[0] == "list_directory"
    assert (auto["used"], names(auto)[0]) == ("hybrid", "git_log")
    assert computed <= 1  # tool vectors: computed at most once (or loaded from Redis), never per request


async def test_tool_vectors_are_computed_once_per_catalog_version_and_shared_through_redis(
    make_settings, offline
) -> None:
    """Through the embeddings function: the catalog is embedded once; later requests embed only the query."""
    embeddings = EmbeddingsServer()
    # A fresh model name: fresh Redis keys for the vectors and the selections (both are keyed by model),
    # so the queries need no random suffix, which made the ranking asserted below vary from run to run.
    model = f"test-model-{uuid.uuid4().hex}"
    async with running(embeddings.app()) as embeddings_url:
        env = {"VICTOR_EMBEDDINGS_URL": embeddings_url, "VICTOR_EMBEDDING_MODEL": model}
        async with tools_server(make_settings, **env) as server:
            first = await select(server, "create a new file", "semantic")
            await select(server, "replace a line of text in a file", "semantic")
            await select(server, "run the test suite", "hybrid")
            assert server.service.selector.vector_computations == 1
        assert embeddings.texts_embedded == 11 + 3
        async with tools_server(make_settings, **env) as second_replica:
            await select(second_replica, "find all python files", "semantic")
            assert second_replica.service.selector.vector_computations == 0
        assert embeddings.texts_embedded == 11 + 3 + 1
    assert names(first)[0] == "write_file"


async def test_selections_are_cached_in_process_and_in_redis(make_settings, offline) -> None:
    query = f"find all python files {uuid.uuid4().hex}"
    async with without_embeddings(make_settings, VICTOR_TOOL_CACHE_SIZE="1") as server:
        first = await select(server, query, "keyword")
        second = await select(server, query.upper(), "keyword")
        other_k = await select(server, query, "keyword", k=2)
        await select(server, f"evict {uuid.uuid4().hex}", "keyword")
        from_redis = await select(server, query, "keyword")
        metrics = (await server.client.get("/metrics")).text
    assert [first["cached"], second["cached"], other_k["cached"], from_redis["cached"]] == [
        False,
        True,
        False,
        True,
    ]
    assert second["tools"] == first["tools"]
    assert second["query"] == query.upper()
    assert 'victor_cache_hit_ratio{cache="tool_selection"}' in metrics


async def test_the_selection_cache_can_be_turned_off(make_settings, offline) -> None:
    query = f"create a new file {uuid.uuid4().hex}"
    async with without_embeddings(make_settings, VICTOR_ENABLE_TOOL_CACHE="false") as server:
        first = await select(server, query, "keyword")
        second = await select(server, query, "keyword")
    assert (first["cached"], second["cached"]) == (False, False)
    assert first["tools"] == second["tools"]


async def test_code_search_finds_code_by_meaning(make_settings, offline) -> None:
    async with tools_server(make_settings, VICTOR_EMBEDDING_MODEL=local_model_path()) as server:
        (server.workspace / "src" / "dates.py").write_text(
            "from datetime import datetime\n\n\n"
            "def parse_iso_date(text):\n    return datetime.fromisoformat(text)\n"
        )
        found = await server.call("code_search", {"query": "parse a date string", "k": 1})
        python_only = await server.call("code_search", {"query": "project readme", "glob": "*.md", "k": 1})
        outside = await server.call("code_search", {"query": "x", "path": "../"})
    assert found["content"].startswith("src/dates.py:1-5 (score ")
    assert "def parse_iso_date(text):" in found["content"]
    assert python_only["content"].startswith("README.md:1-3 (score ")
    assert (outside["is_error"], outside["error"]) == (True, "outside_workspace")


async def test_a_request_sharing_no_word_with_any_tool_keeps_every_tool(make_settings, offline) -> None:
    # The issue-15 case: keyword ranking scores every tool 0.0, so cutting to k would drop at random.
    async with without_embeddings(make_settings) as server:
        selection = await select(server, "What does NOTES.md say?", "auto", k=3)
    assert selection["used"] == "keyword"
    assert selection["pruned"] is False
    assert "read_file" in names(selection)
    assert len(selection["tools"]) == 11


async def test_a_catalog_at_or_below_the_threshold_is_returned_whole(make_settings, offline) -> None:
    async with without_embeddings(make_settings) as server:
        body = {"query": "show the commit history", "strategy": "keyword", "k": 2}
        whole = await server.client.post("/v1/tools/select", json={**body, "keep_all_up_to": 11})
        pruned = await server.client.post("/v1/tools/select", json={**body, "keep_all_up_to": 10})
    assert (whole.json()["pruned"], len(whole.json()["tools"])) == (False, 11)
    assert names(whole.json())[0] == "git_log"
    assert (pruned.json()["pruned"], names(pruned.json())[0], len(pruned.json()["tools"])) == (
        True,
        "git_log",
        2,
    )


async def test_what_does_notes_say_keeps_read_file_with_the_local_model(make_settings, offline) -> None:
    async with tools_server(make_settings, VICTOR_EMBEDDING_MODEL=local_model_path()) as server:
        selection = await select(server, "What does NOTES.md say?", "auto", k=8)
    assert selection["used"] == "hybrid"
    assert "read_file" in names(selection)
