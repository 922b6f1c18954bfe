"""A function's start imports nothing heavy: SDKs, MCP, LanceDB, models and clients load on first use.

Each case runs in a fresh interpreter, imports the `victor` command line and builds the
app as `victor serve NAME` does (or imports the functions-framework entry module) and
runs the function's start, with Redis, PostgreSQL and an LLM provider configured
(unreachable: nothing connects at start), then lists which of the heavy packages (and
the tracing SDK) were imported. Speed itself is measured in bench/cold_start.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.embedding_model import bundled_model_path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {
    "mcp",
    "anthropic",
    "openai",
    "lancedb",
    "torch",
    "sentence_transformers",
    "numpy",
    "httpx",
    "jwt",
    "redis",
    "asyncpg",
    # The tracing SDK, when no OTLP endpoint is set: loaded with the first span (none at start).
    "opentelemetry.sdk",
    "regex",  # the grep tool's engine, loaded with the first grep
}
_PROBE = """
import asyncio, importlib, json, sys
mode, name, heavy = sys.argv[1], sys.argv[2], set(sys.argv[3:])
if mode == "serve":
    import eventing.cli.main  # `victor serve` loads the whole command line first
    from common.settings import get_settings
    from eventing.cli.serve import load_app
    runtime = load_app(name, get_settings()).state.runtime
    if not runtime.spec.start_in_background:  # a start in the background (embeddings' model) is off the path
        asyncio.run(runtime.start())
else:
    handle = importlib.import_module(f"functions.{name}.main").handle
    if name != "embeddings":
        asyncio.run(handle.dispatcher.ensure_runtime())
print(json.dumps(sorted(heavy & {*sys.modules, *(module.split(".")[0] for module in sys.modules)})))
"""


def heavy_imported(mode: str, name: str, tmp_path: Path) -> list[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VICTOR_", "OTEL_"))}
    env.update(
        WORKSPACE_DIR=str(tmp_path / "workspace"),
        LANCEDB_URI=str(tmp_path / "lancedb"),
        REDIS_URL="redis://127.0.0.1:9/0",
        DATABASE_URL="postgresql://victor@127.0.0.1:9/victor",
        ANTHROPIC_API_KEY="test-key",
        ANTHROPIC_BASE_URL="http://127.0.0.1:9",
        VICTOR_TOOLS_URL="http://127.0.0.1:9",
        VICTOR_EMBEDDINGS_URL="http://127.0.0.1:9",
        # The model on disk (settings check a hub name against the cache when HF_HUB_OFFLINE is set).
        VICTOR_EMBEDDING_MODEL=str(bundled_model_path()),
    )
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, name, *sorted(HEAVY)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize("mode", ["serve", "functions-framework"])
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("health", []),
        ("tools", []),
        # Chat's readiness waits for PostgreSQL, so its client library is on the path; nothing else is.
        ("chat", ["asyncpg"]),
        # The model and LanceDB load after the server listens; numpy is what vectors are made of.
        ("embeddings", ["numpy"]),
    ],
)
def test_starting_a_function_leaves_the_heavy_packages_unimported(
    mode: str, name: str, expected: list[str], tmp_path: Path
) -> None:
    assert heavy_imported(mode, name, tmp_path) == expected
