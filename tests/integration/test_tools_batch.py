"""Batches over HTTP: bounded parallelism, ordered writes, per-call errors, per-tool timeout."""

from __future__ import annotations

import itertools
from typing import Any

from functions.tools.settings import ToolsSettings
from tests.support.tools import tools_server

SLOW = ToolsSettings(enable_run_command=True, run_command_allowlist=("sleep",), command_timeout=10)


def max_overlap(results: list[dict[str, Any]]) -> int:
    """The largest number of calls running at one instant, from their start and end times."""
    edges = sorted(
        [(r["started_at"], 1) for r in results] + [(r["finished_at"], -1) for r in results],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def sleeps(count: int, seconds: str = "0.4") -> dict[str, Any]:
    return {
        "calls": [
            {"id": f"s{i}", "name": "run_command", "arguments": {"argv": ["sleep", seconds]}}
            for i in range(count)
        ]
    }


async def test_ten_slow_calls_all_run_at_once(make_settings) -> None:
    async with tools_server(make_settings, SLOW) as server:
        response = await server.client.post("/v1/tools/batch", json=sleeps(10))
    results = response.json()["results"]
    assert [r["id"] for r in results] == [f"s{i}" for i in range(10)]
    assert all(r["is_error"] is False for r in results)
    assert max_overlap(results) == 10


async def test_concurrency_is_bounded_by_max_concurrent_tools(make_settings) -> None:
    async with tools_server(make_settings, SLOW, VICTOR_MAX_CONCURRENT_TOOLS="3") as server:
        results = (await server.client.post("/v1/tools/batch", json=sleeps(7, "0.2"))).json()["results"]
    assert max_overlap(results) == 3


async def test_batches_run_one_at_a_time_when_parallel_execution_is_off(make_settings) -> None:
    async with tools_server(make_settings, SLOW, VICTOR_ENABLE_PARALLEL_EXECUTION="false") as server:
        results = (await server.client.post("/v1/tools/batch", json=sleeps(3, "0.1"))).json()["results"]
    assert max_overlap(results) == 1


async def test_writes_to_one_path_keep_their_order_and_reads_see_them(make_settings) -> None:
    calls = [{"name": "write_file", "arguments": {"path": "notes/order.txt", "content": "v0"}}]
    for step in range(1, 12):
        calls.append(
            {
                "name": "edit_file",
                "arguments": {"path": "notes/order.txt", "old_text": f"v{step - 1}", "new_text": f"v{step}"},
            }
        )
        calls.append({"name": "read_file", "arguments": {"path": "notes/order.txt", "line_numbers": False}})
    calls.append({"name": "write_file", "arguments": {"path": "other.txt", "content": "independent"}})
    async with tools_server(make_settings) as server:
        results = (await server.client.post("/v1/tools/batch", json={"calls": calls})).json()["results"]
        final = (server.workspace / "notes/order.txt").read_text()
    assert [r["is_error"] for r in results] == [False] * len(calls)
    reads = [r["content"] for r in results if r["name"] == "read_file"]
    assert reads == [f"v{step}" for step in range(1, 12)]
    assert final == "v11"
    edits = [r for r in results if r["name"] == "edit_file"]
    assert all(a["finished_at"] <= b["started_at"] for a, b in itertools.pairwise(edits))


async def test_each_call_reports_its_own_error_without_failing_the_batch(make_settings) -> None:
    calls = [
        {"id": "a", "name": "read_file", "arguments": {"path": "README.md", "limit": 1}},
        {"id": "b", "name": "no_such_tool", "arguments": {}},
        {"id": "c", "name": "read_file", "arguments": {"path": 7}},
        {"id": "d", "name": "read_file", "arguments": {"path": "../etc/passwd"}},
        {"id": "e", "name": "run_command", "arguments": {"argv": ["sleep", "5"]}},
    ]
    limits = ToolsSettings(enable_run_command=True, run_command_allowlist=("sleep",), tool_timeout=0.3)
    async with tools_server(make_settings, limits) as server:
        results = (await server.client.post("/v1/tools/batch", json={"calls": calls})).json()["results"]
    assert [(r["id"], r["is_error"], r["error"]) for r in results] == [
        ("a", False, None),
        ("b", True, "unknown_tool"),
        ("c", True, "invalid_arguments"),
        ("d", True, "outside_workspace"),
        ("e", True, "timeout"),
    ]
    assert results[0]["content"] == "1\t# Demo\n[2 more lines; read on with offset=2]"
    assert results[2]["content"] == "invalid arguments for read_file: Expected `str`, got `int` - at `$.path`"


async def test_tools_keep_answering_while_redis_is_down(make_settings, tmp_path) -> None:
    from eventing.dev.embedded import EmbeddedRedis

    redis = EmbeddedRedis(tmp_path / "private-redis")
    url = redis.start()
    try:
        async with tools_server(make_settings, REDIS_URL=url, VICTOR_EMBEDDING_MODEL="/none") as server:
            await server.call("read_file", {"path": "README.md"})
            cached = await server.call("read_file", {"path": "README.md"})
            redis.stop()
            uncached = await server.call("read_file", {"path": "README.md"})
            wrote = await server.call("write_file", {"path": "during-outage.txt", "content": "ok"})
            selected = await server.client.post(
                "/v1/tools/select", json={"query": "commit history", "k": 1, "strategy": "keyword"}
            )
    finally:
        redis.stop()
    assert (cached["cached"], uncached["cached"]) == (True, False)
    assert uncached["content"] == cached["content"]
    assert wrote["is_error"] is False
    assert selected.status_code == 200 and selected.json()["tools"][0]["name"] == "git_log"
