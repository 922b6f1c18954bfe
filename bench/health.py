"""Health function: cold start and /health/live throughput beside bare functions-framework and Litestar.

(a) Cold start: seconds from starting the process to the first 200 on
/health/ready, for `victor serve health` (embedded PostgreSQL and Redis
started once beforehand, not counted), a bare functions-framework app and a
bare Litestar app under uvicorn. Repeated, interleaved; median and p90.

(b) Throughput: requests per second and p50/p99 latency on /health/live from
a load generator in its own process (keep-alive connections), our function
with metrics and tracing on (an OTLP endpoint configured), beside the two
bare apps. Interleaved rounds; the round with the median rate is reported.

Goals (issue 2): cold start within 1.5x of bare functions-framework;
throughput at least 70% of bare Litestar.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec

from bench.support import (
    PYTHON,
    LoadResult,
    Target,
    bare_baselines,
    bare_environment,
    cpu_seconds,
    embedded_stores,
    free_port,
    measure_cold_starts,
    median,
    percentile,
    print_header,
    print_json,
    quick,
    run_load,
    scratch_dir,
    serving,
    table,
)

# A caller that is tracing: every request of this row gets a server span, exported over OTLP.
TRACEPARENT = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
COLD_START_GOAL = 1.5  # at most this many times the bare functions-framework app
THROUGHPUT_GOAL = 0.70  # at least this share of the bare Litestar app's requests per second


class _DiscardSpans(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts and drops spans, so tracing is on with an exporter."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def span_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DiscardSpans)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def targets(base_env: dict[str, str], victor_env: dict[str, str]) -> list[Target]:
    """Our function, then the two bare baselines (the order the tables use)."""
    ours = Target(
        "victor health (metrics+tracing)",
        (PYTHON, "-m", "eventing.cli", "serve", "health", "--host", "127.0.0.1"),
        {**base_env, **victor_env},
    )
    return [ours, *bare_baselines(base_env)]


class Throughput(msgspec.Struct, kw_only=True):
    """One load run against one server, with the server's own CPU time during it."""

    load: LoadResult
    server_cpu_s: float

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.load.requests * 1e6 if self.load.requests else float("nan")


def measure_throughput(
    all_targets: list[Target], rounds: int, logs: Path, *, connections: int, requests: int, seconds: float
) -> dict[str, Throughput]:
    """Interleaved rounds; for each target the round with the median requests per second."""
    runs: dict[str, list[Throughput]] = {t.name: [] for t in all_targets}
    for _ in range(rounds):
        for target in all_targets:
            port = free_port()
            command, env = target.command(port), target.environment(port)
            with serving(command, env, port, logs, "/health/ready") as server:
                assert server.process is not None
                run_load(  # warm-up
                    port,
                    "/health/live",
                    requests=10**9,
                    seconds=1.0,
                    warmup_seconds=0,
                    connections=connections,
                    headers=target.load_headers,
                )
                cpu_before = cpu_seconds(server.process.pid)
                result = run_load(
                    port,
                    "/health/live",
                    requests=requests,
                    seconds=seconds,
                    warmup_seconds=0,
                    connections=connections,
                    headers=target.load_headers,
                )
                cpu = cpu_seconds(server.process.pid) - cpu_before
                runs[target.name].append(Throughput(load=result, server_cpu_s=cpu))
    return {name: sorted(found, key=lambda r: r.load.rps)[len(found) // 2] for name, found in runs.items()}


def main() -> None:
    short = quick()
    repeats = 3 if short else 9
    rounds = 1 if short else 3
    connections = 16
    requests = 4000 if short else 40000
    seconds = 2.0 if short else 8.0

    print_header("Health function: cold start and /health/live throughput")
    base_env = bare_environment()
    with scratch_dir("victor-bench-health-") as root, span_sink() as sink, embedded_stores(root) as stores:
        victor_env = {
            **stores,
            "LANCEDB_URI": str(root / "lancedb"),
            "WORKSPACE_DIR": str(root),
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
            "VICTOR_LOG_LEVEL": "WARNING",
        }
        ours, ff, litestar = targets(base_env, victor_env)
        traced = Target(
            "victor health, caller tracing (span per request)",
            ours.argv,
            ours.env,
            load_headers=(TRACEPARENT,),
        )
        logs = root / "logs"
        logs.mkdir()
        starts = measure_cold_starts([ours, ff, litestar], repeats, logs)
        cold = {name: [start.wall_s for start in found] for name, found in starts.items()}
        load = measure_throughput(
            [ours, traced, ff, litestar],
            rounds,
            logs,
            connections=connections,
            requests=requests,
            seconds=seconds,
        )

    cold_rows = [
        [name, median(values), percentile(values, 0.9), median(values) / median(cold[ff.name])]
        for name, values in cold.items()
    ]
    print(f"(a) cold start to first 200 on /health/ready, {repeats} runs each (seconds)\n")
    print(table(["app", "median s", "p90 s", "x bare functions-framework"], cold_rows))

    base = load[litestar.name]
    load_rows = [
        [
            name,
            r.load.rps,
            r.load.p50_ms,
            r.load.p99_ms,
            f"{r.load.errors}/{r.load.requests}",
            r.cpu_us_per_request,
            r.load.rps / base.load.rps,
            base.cpu_us_per_request / r.cpu_us_per_request,
        ]
        for name, r in load.items()
    ]
    print(
        f"\n(b) GET /health/live, {connections} keep-alive connections, up to {requests} requests"
        f" or {seconds:g}s after a 1s warm-up, median of {rounds} round(s)\n"
    )
    headers = ["app", "req/s", "p50 ms", "p99 ms", "non-200/total", "server CPU us/req"]
    print(table([*headers, "req/s x Litestar", "req/CPU-s x Litestar"], load_rows))

    cold_ratio = median(cold[ours.name]) / median(cold[ff.name])
    throughput_ratio = load[ours.name].load.rps / base.load.rps
    cpu_ratio = base.cpu_us_per_request / load[ours.name].cpu_us_per_request
    print("\ngoals (issue 2)\n")
    goals = [
        [
            "cold start vs bare functions-framework",
            f"<= {COLD_START_GOAL}x",
            f"{cold_ratio:.2f}x",
            cold_ratio <= COLD_START_GOAL,
        ],
        [
            "req/s vs bare Litestar",
            f">= {THROUGHPUT_GOAL:.0%}",
            f"{throughput_ratio:.0%}",
            throughput_ratio >= THROUGHPUT_GOAL,
        ],
        [
            "req per server CPU-s vs bare Litestar",
            f">= {THROUGHPUT_GOAL:.0%}",
            f"{cpu_ratio:.0%}",
            cpu_ratio >= THROUGHPUT_GOAL,
        ],
    ]
    print(
        table(["goal", "target", "measured", "met"], [[*row[:3], "yes" if row[3] else "NO"] for row in goals])
    )
    print_json(
        "health",
        {
            "cold_start_s": {
                name: {"median": median(v), "p90": percentile(v, 0.9)} for name, v in cold.items()
            },
            "live": {
                name: {
                    "rps": r.load.rps,
                    "p50_ms": r.load.p50_ms,
                    "p99_ms": r.load.p99_ms,
                    "cpu_us_per_request": r.cpu_us_per_request,
                }
                for name, r in load.items()
            },
            "cold_start_ratio": cold_ratio,
            "throughput_ratio": throughput_ratio,
            "cpu_throughput_ratio": cpu_ratio,
        },
    )


if __name__ == "__main__":
    main()
