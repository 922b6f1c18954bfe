"""`python -m bench [--quick] [AREA ...]`: run every benchmark module, or the named ones, in turn.

A benchmark is any `bench/<area>.py` with a `main()`; modules whose names start
with "_" (baseline apps) and `support` are not benchmarks. New modules are found
without registering them here.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

NOT_BENCHMARKS = {"__init__", "__main__", "support", "compare"}


def discover() -> list[str]:
    """Names of the benchmark modules in bench/, sorted."""
    here = Path(__file__).resolve().parent
    return sorted(
        path.stem
        for path in here.glob("*.py")
        if path.stem not in NOT_BENCHMARKS and not path.stem.startswith("_")
    )


def main(argv: list[str]) -> int:
    names = [arg for arg in argv if not arg.startswith("-")]
    available = discover()
    unknown = [name for name in names if name not in available]
    if unknown:
        print(
            f"bench: no benchmark named {', '.join(unknown)}; available: {', '.join(available)}",
            file=sys.stderr,
        )
        return 2
    failed: list[str] = []
    for name in names or available:
        started = time.perf_counter()
        print(f"\n=== bench.{name} ===", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            run = getattr(module, "main", None)
            if run is None:
                print(f"bench.{name} has no main(); skipped")
                continue
            run()
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
        print(f"=== bench.{name} took {time.perf_counter() - started:.0f}s ===", flush=True)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
