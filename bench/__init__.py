"""Benchmarks: each `bench/<area>.py` has a `main()` printing its figures beside a baseline from the same run.

`python -m bench` runs them all, `python -m bench AREA ...` the named ones;
BENCH_QUICK=1 (or --quick) makes every run short.
"""
