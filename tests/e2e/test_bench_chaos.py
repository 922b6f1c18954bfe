"""`python -m bench chaos --quick` runs in full and prints counts that add up.

Whether every turn survives the kills (0 lost, 0 duplicates) is the benchmark's
finding, recorded in docs/benchmarks.md; this test holds the benchmark itself to
its promise: at least 20 turns, at least 3 SIGKILLs, one Redis restart, and
figures that are consistent with each other and with what really ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


def test_quick_chaos_run_prints_consistent_counts() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VICTOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "chaos", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,  # < 3 min on a quiet machine; the shared CI machine can take twice that
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH-RESULT chaos ")]
    assert len(lines) == 1, done.stdout[-3000:]
    figures = json.loads(lines[0].removeprefix("BENCH-RESULT chaos "))

    assert figures["turns"] >= 20
    assert figures["turns"] == figures["completed"] + figures["lost"]
    assert figures["lost"] == figures["failed"] + figures["unfinished"] + figures["never_started"]
    assert figures["kills"] >= 3
    assert figures["kills"] == sum(figures["kills_by_process"].values())
    assert set(figures["kills_by_process"]) <= {"broker", "chat", "tools", "embeddings"}
    assert figures["redis_restarts"] == 1
    # Every completed turn made its three model calls and logged its two tool runs, at least once.
    assert figures["llm_calls"] >= 3 * figures["completed"] + figures["duplicate_llm_calls"]
    assert figures["tool_runs"] >= 2 * figures["completed"] + figures["duplicate_tool_runs"]
    # One file per turn at most: a write that was interrupted by a kill may not have happened (tools
    # runs a write at most once and tells the model so), but none ran twice into another name.
    assert figures["files_written"] <= figures["turns"]
    assert figures["duplicate_llm_calls"] >= 0 and figures["duplicate_tool_runs"] >= 0
