"""`victor dev`: how long until it serves, how fast it brings back a killed function, how fast it stops.

(a) Ready: seconds from starting `victor dev --only broker,health` (PostgreSQL
and Redis configured, started once beforehand and not counted) to the first
200 on health's /health/ready, and to the printed URL table; beside the
baseline, a bare `victor serve health` started the same way.

(b) Restart: seconds from SIGKILL of the health process to its next 200 on
/health/ready under `victor dev` (includes the first backoff delay, 0.5 s),
beside the bare cold start.

(c) Stop: seconds from SIGTERM to `victor dev` having exited with every child
gone, beside SIGTERM to exit of the bare `victor serve health`.

(d) Embedded services: `victor dev`'s own PostgreSQL and Redis start (with
migrations) on an empty data directory (initdb) and again on the same one.

Repeated (3 rounds, 1 with --quick / BENCH_QUICK=1); medians reported.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from bench.support import (
    PYTHON,
    ServerProcess,
    free_port,
    free_port_base,
    median,
    print_header,
    print_json,
    probe_status,
    quick,
    scratch_dir,
    table,
    wait_until,
)
from eventing.dev.stores import DevServices, prepare_data_dir


def _dev_round(env: dict[str, str], scratch: Path) -> dict[str, float]:
    base = free_port_base()
    data_dir = scratch / f"dev-{base}"
    argv = [PYTHON, "-m", "eventing.cli", "dev", "--only", "broker,health", "--port-base", str(base)]
    argv += ["--data-dir", str(data_dir), "--ping-interval", "0"]
    server = ServerProcess(argv, env, base + 4, scratch)
    server.start()
    try:
        ready = server.wait_ok("/health/ready")
        wait_until(lambda: "victor dev is running" in server.log_path.read_text(errors="replace"))
        table_at = time.perf_counter() - server.started_at
        assert server.process is not None
        dev = psutil.Process(server.process.pid)
        health = next(p for p in dev.children() if "health" in p.cmdline())
        killed = time.perf_counter()
        health.kill()
        wait_until(lambda: probe_status(base + 4, "/health/ready") != 200)
        restarted = wait_until(lambda: probe_status(base + 4, "/health/ready") == 200) - killed
        children = dev.children(recursive=True)
        stopping = time.perf_counter()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(60)
        wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children))
        stopped = time.perf_counter() - stopping
    finally:
        server.stop()
    return {"ready": ready, "table": table_at, "restart": restarted, "stop": stopped}


def _bare_round(env: dict[str, str], scratch: Path) -> tuple[float, float]:
    """Baseline: a bare `victor serve health`, seconds to ready and from SIGTERM to exit."""
    port = free_port()
    argv = [PYTHON, "-m", "eventing.cli", "serve", "health", "--host", "127.0.0.1"]
    server = ServerProcess(argv, {**env, "PORT": str(port)}, port, scratch)
    server.start()
    try:
        ready = server.wait_ok("/health/ready")
        assert server.process is not None
        stopping = time.perf_counter()
        server.process.terminate()
        server.process.wait(60)
        return ready, time.perf_counter() - stopping
    finally:
        server.stop()


def _embedded_round(scratch: Path) -> tuple[float, float]:
    data_dir = prepare_data_dir(scratch / f"embedded-{time.monotonic_ns()}", fresh=False)
    timings = []
    for _ in range(2):
        services = DevServices(data_dir, {})
        started = time.perf_counter()
        try:
            services.start()
            timings.append(time.perf_counter() - started)
        finally:
            services.stop()
    return timings[0], timings[1]


def main() -> None:
    rounds = 1 if quick() else 3
    print_header("victor dev: ready, restart, stop")
    with scratch_dir("victor-bench-dev-") as scratch:
        services = DevServices(prepare_data_dir(scratch / "shared", fresh=False), {})
        services.start()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("VICTOR_")}
            env.update(services.env(), LANCEDB_URI=str(scratch / "lancedb"))
            bare: list[tuple[float, float]] = []
            dev: list[dict[str, float]] = []
            for _ in range(rounds):
                bare.append(_bare_round(env, scratch))
                dev.append(_dev_round(env, scratch))
        finally:
            services.stop()
        embedded = [_embedded_round(scratch) for _ in range(rounds)]

    figures = {
        "bare_serve_health_ready_s": median([b[0] for b in bare]),
        "bare_serve_health_stop_s": median([b[1] for b in bare]),
        "dev_health_ready_s": median([d["ready"] for d in dev]),
        "dev_table_printed_s": median([d["table"] for d in dev]),
        "dev_restart_after_kill_s": median([d["restart"] for d in dev]),
        "dev_stop_s": median([d["stop"] for d in dev]),
        "embedded_cold_start_s": median([e[0] for e in embedded]),
        "embedded_warm_start_s": median([e[1] for e in embedded]),
    }
    print(
        table(
            ["measure (median s)", "victor dev", "baseline", "baseline is"],
            [
                [
                    "health ready",
                    figures["dev_health_ready_s"],
                    figures["bare_serve_health_ready_s"],
                    "bare serve",
                ],
                [
                    "URL table printed",
                    figures["dev_table_printed_s"],
                    figures["bare_serve_health_ready_s"],
                    "bare serve",
                ],
                [
                    "killed health ready again",
                    figures["dev_restart_after_kill_s"],
                    figures["bare_serve_health_ready_s"],
                    "bare serve",
                ],
                [
                    "stop (SIGTERM to all gone)",
                    figures["dev_stop_s"],
                    figures["bare_serve_health_stop_s"],
                    "bare serve",
                ],
                [
                    "embedded PG+Redis+migrations",
                    figures["embedded_warm_start_s"],
                    figures["embedded_cold_start_s"],
                    "first run (initdb)",
                ],
            ],
        )
    )
    print(f"\nrounds: {rounds}; victor dev runs broker and health, services configured (not counted)")
    print_json("dev", figures)


if __name__ == "__main__":
    main()
