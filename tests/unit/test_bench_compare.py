"""bench.compare: a run's BENCH-RESULT figures against bench/baseline.json, failing beyond the threshold."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from bench.__main__ import discover
from bench.compare import Baseline, main

ROOT = Path(__file__).parents[2]


def run_output(health: dict[str, object], broker: dict[str, object] | None = None) -> str:
    lines = ["## some table", "BENCH-RESULT health " + json.dumps(health)]
    if broker is not None:
        lines.append("BENCH-RESULT broker " + json.dumps(broker))
    return "\n".join(lines) + "\n"


def files(tmp_path: Path, output: str) -> tuple[str, str]:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(
        json.dumps(
            {
                "measured": "test",
                "threshold_percent": 25,
                "figures": [
                    {"area": "health", "path": "throughput_ratio", "value": 0.8, "better": "higher"},
                    {"area": "broker", "path": "saturated.p99_ms", "value": 20.0, "better": "lower"},
                ],
            }
        )
    )
    run = tmp_path / "run.txt"
    run.write_text(output)
    return str(baseline), str(run)


def test_figures_within_the_threshold_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = run_output({"throughput_ratio": 0.7}, {"saturated": {"p99_ms": 24.0}})
    assert main([*files(tmp_path, output)]) == 0
    out = capsys.readouterr().out
    assert "health.throughput_ratio" in out and "+12.5%" in out  # 0.7 vs 0.8, higher is better
    assert "broker.saturated.p99_ms" in out and "+20.0%" in out


def test_a_regression_beyond_the_threshold_fails_naming_the_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = run_output({"throughput_ratio": 0.9}, {"saturated": {"p99_ms": 26.0}})
    assert main([*files(tmp_path, output)]) == 1
    assert capsys.readouterr().err == (
        "bench.compare: broker.saturated.p99_ms: 26 is 30.0% worse than the baseline 20 "
        "(lower is better; threshold 25%)\n"
    )
    assert main([*files(tmp_path, output), "--threshold", "35"]) == 0


def test_a_figure_the_run_did_not_report_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*files(tmp_path, run_output({"throughput_ratio": 0.8}))]) == 1
    assert capsys.readouterr().err == (
        "bench.compare: broker.saturated.p99_ms: the run reported no such figure\n"
    )


def test_unreadable_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline, run = files(tmp_path, "")
    Path(baseline).write_text("{not json")
    assert main([baseline, run]) == 2
    assert capsys.readouterr().err.startswith("bench.compare: cannot read the input: ")


def test_the_stored_baseline_is_valid_and_compare_is_not_run_as_a_benchmark() -> None:
    baseline = msgspec.json.decode((ROOT / "bench" / "baseline.json").read_bytes(), type=Baseline)
    assert {f.area for f in baseline.figures} <= set(discover())
    assert "compare" not in discover()
