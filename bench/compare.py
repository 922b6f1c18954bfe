"""`python -m bench.compare BASELINE OUTPUT [--threshold PCT]`: a benchmark run against the stored baseline.

BASELINE (bench/baseline.json) names figures by area and dotted path into that area's
`BENCH-RESULT <area> {json}` line, each with its baseline value and which direction is
better. OUTPUT is what `python -m bench` printed. A figure that got worse than its baseline
by more than the threshold (percent; the baseline file's own `threshold_percent` unless
given) fails the comparison; a figure missing from the output fails it too, since a
benchmark that stopped reporting is a regression of its own. Prints one row per figure;
exits 1 on any failure, 2 on unreadable input. It is not itself a benchmark (bench.__main__
leaves it out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

import msgspec

from bench.support import table


class Figure(msgspec.Struct, forbid_unknown_fields=True):
    area: str
    path: str
    value: float
    better: Literal["higher", "lower"]
    note: str = ""


class Baseline(msgspec.Struct, forbid_unknown_fields=True):
    measured: str
    threshold_percent: float
    figures: list[Figure]


def results(output: str) -> dict[str, Any]:
    """Every `BENCH-RESULT <area> {json}` line of a run, by area (a later line of an area wins)."""
    found: dict[str, Any] = {}
    for line in output.splitlines():
        if line.startswith("BENCH-RESULT "):
            _, area, payload = line.split(" ", 2)
            found[area] = json.loads(payload)
    return found


def lookup(figures: Any, path: str) -> float | None:
    """The number at a dotted path (`saturated.events_per_s`), or None where the run has none."""
    node = figures
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def regression(figure: Figure, measured: float) -> float:
    """How much worse than the baseline, in percent (negative when better)."""
    if figure.value == 0:
        return 0.0
    change = (measured - figure.value) / abs(figure.value) * 100
    return -change if figure.better == "higher" else change


def compare(baseline: Baseline, output: str, threshold: float) -> tuple[list[list[str]], list[str]]:
    """Table rows and the failures, one sentence each."""
    found = results(output)
    rows: list[list[str]] = []
    failures: list[str] = []
    for figure in baseline.figures:
        name = f"{figure.area}.{figure.path}"
        measured = lookup(found.get(figure.area), figure.path)
        if measured is None:
            rows.append([name, f"{figure.value:g}", "missing", "-", "FAIL"])
            failures.append(f"{name}: the run reported no such figure")
            continue
        worse = regression(figure, measured)
        ok = worse <= threshold
        rows.append([name, f"{figure.value:g}", f"{measured:g}", f"{worse:+.1f}%", "ok" if ok else "FAIL"])
        if not ok:
            failures.append(
                f"{name}: {measured:g} is {worse:.1f}% worse than the baseline {figure.value:g} "
                f"({figure.better} is better; threshold {threshold:g}%)"
            )
    return rows, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, help="bench/baseline.json")
    parser.add_argument("output", type=Path, help="what `python -m bench` printed")
    parser.add_argument("--threshold", type=float, help="largest allowed regression in percent")
    args = parser.parse_args(argv)
    try:
        baseline = msgspec.json.decode(args.baseline.read_bytes(), type=Baseline)
        output = args.output.read_text(errors="replace")
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        print(f"bench.compare: cannot read the input: {exc}", file=sys.stderr)
        return 2
    threshold = baseline.threshold_percent if args.threshold is None else args.threshold
    rows, failures = compare(baseline, output, threshold)
    print(table(["figure", "baseline", "this run", "worse by", "verdict"], rows))
    print(f"\nbaseline measured {baseline.measured}; threshold {threshold:g}%")
    for failure in failures:
        print(f"bench.compare: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
