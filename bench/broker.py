"""Local broker: events per second and end-to-end latency, beside a direct POST to the same subscriber.

Processes (each its own interpreter, so no two share a GIL): Redis (embedded
unless REDIS_URL is set), the broker (`victor serve broker`), a trivial
subscriber that answers each `bench.request` with a `bench.reply` event, a
sink that timestamps each reply's arrival, and a load generator speaking
HTTP/1.1 keep-alive over raw asyncio streams. Two Triggers route
request -> subscriber and reply -> sink, so an event crosses the broker twice
("through the broker to a trivial subscriber and back").

Figures, all from one run:
- direct: the load generator POSTs the event straight to the subscriber and
  waits for its reply event (the floor: one HTTP hop).
- broker, saturated: closed-loop ingress for a few seconds; events/s counted at
  the sink from the first send to the last reply.
- broker, paced: open-loop at a fixed rate; p50/p99 from send to the reply's
  arrival at the sink (CLOCK_MONOTONIC is shared by processes on Linux).

Goal (issue 3): >= 1,000 events/s with p99 < 25 ms on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from bench.support import (
    PYTHON,
    cpu_seconds,
    free_port,
    percentile,
    print_header,
    print_json,
    quick,
    read_response,
    scratch_dir,
    serving,
    table,
)
from eventing.dev.embedded import EmbeddedRedis

GOAL_EVENTS_PER_SECOND = 1000
GOAL_P99_MS = 25.0
SENT = b"ce-benchsent"


class LoadReport(msgspec.Struct, kw_only=True):
    sent: int
    errors: int
    seconds: float
    first_sent: float
    p50_ms: float
    p99_ms: float


# ---------------------------------------------------------------- subscriber and sink (raw ASGI)


async def _body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        kind = message["type"].rsplit(".", 1)[-1]
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return


async def subscriber(scope: Any, receive: Any, send: Any) -> None:
    """Answers every event with one `bench.reply` event carrying the request's send time."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await _body(receive)
    headers = dict(scope["headers"])
    reply = [
        (b"ce-specversion", b"1.0"),
        (b"ce-id", b"r-" + headers.get(b"ce-id", b"")),
        (b"ce-source", b"/bench/subscriber"),
        (b"ce-type", b"bench.reply"),
        (SENT, headers.get(SENT, b"0")),
        (b"content-type", b"application/json"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": reply})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


class Sink:
    """Timestamps each reply's arrival; GET /stats returns the latencies, DELETE /stats clears them."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.last_arrival = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await _body(receive)
        body = b""
        if scope["method"] == "POST":
            now = time.monotonic()
            sent = float(dict(scope["headers"]).get(SENT, b"0"))
            self.latencies.append(now - sent)
            self.last_arrival = now
        elif scope["method"] == "GET":
            body = json.dumps({"latencies": self.latencies, "last_arrival": self.last_arrival}).encode()
        elif scope["method"] == "DELETE":
            self.latencies = []
        status = 200 if scope["method"] == "GET" else 202
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})


def _serve(app: Any, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")


# ---------------------------------------------------------------- load generator


def _request(port: int, path: str, number: int) -> bytes:
    body = b'{"n":%d}' % number
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nce-specversion: 1.0\r\n"
        f"ce-id: e-{number}\r\nce-source: /bench/load\r\nce-type: bench.request\r\n"
        f"ce-benchsent: {time.monotonic():.6f}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def load(
    port: int, path: str, *, connections: int, events: int, seconds: float, rate: float
) -> LoadReport:
    """POST up to `events` events for at most `seconds`; closed-loop, or paced at `rate` per second."""
    counter = [0]
    errors = [0]
    latencies: list[float] = []
    started = time.monotonic()
    stop_at = started + seconds

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while counter[0] < events and time.monotonic() < stop_at:
                number = counter[0]
                counter[0] += 1
                if rate:
                    wait = started + number / rate - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                begun = time.monotonic()
                writer.write(_request(port, path, number))
                status = await read_response(reader)
                latencies.append(time.monotonic() - begun)
                if status not in (200, 202):
                    errors[0] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    return LoadReport(
        sent=len(latencies),
        errors=errors[0],
        seconds=time.monotonic() - started,
        first_sent=started,
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


def run_load(
    port: int, path: str, *, connections: int, events: int, seconds: float, rate: float = 0
) -> LoadReport:
    import subprocess

    argv = [PYTHON, "-m", "bench.broker", "load", "--port", str(port), "--path", path]
    argv += ["--connections", str(connections), "--events", str(events), "--seconds", str(seconds)]
    argv += ["--rate", str(rate)]
    done = subprocess.run(argv, capture_output=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=LoadReport)


# ---------------------------------------------------------------- orchestration


def _http(port: int, method: str, path: str) -> bytes:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        return connection.getresponse().read()
    finally:
        connection.close()


def sink_stats(port: int) -> tuple[list[float], float]:
    stats = json.loads(_http(port, "GET", "/stats"))
    return stats["latencies"], stats["last_arrival"]


def wait_for_sink(port: int, expected: int, timeout: float) -> tuple[list[float], float]:
    """The sink's latencies once `expected` replies arrived (or whatever arrived by `timeout`)."""
    deadline = time.monotonic() + timeout
    latencies, last = sink_stats(port)
    while len(latencies) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        latencies, last = sink_stats(port)
    return latencies, last


MANIFESTS = """\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: victor}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: bench-requests, namespace: victor}}
spec:
  broker: default
  filter: {{attributes: {{type: bench.request}}}}
  subscriber: {{uri: "http://127.0.0.1:{subscriber}/"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: bench-replies, namespace: victor}}
spec:
  broker: default
  filters: [{{exact: {{type: bench.reply}}}}]
  subscriber: {{uri: "http://127.0.0.1:{sink}/"}}
"""


def main() -> None:
    short = quick()
    connections = 16
    seconds = 3.0 if short else 6.0
    paced_rates = [100.0, 500.0, 1000.0] if short else [100.0, 250.0, 500.0, 1000.0]
    print_header("Local broker: events/s and end-to-end latency (request -> subscriber -> reply -> sink)")
    with scratch_dir("victor-bench-broker-") as directory:
        redis_server = None
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis_server = EmbeddedRedis(directory / "redis")
            redis_url = redis_server.start()
        try:
            _measure(directory, redis_url, connections, seconds, paced_rates)
        finally:
            if redis_server is not None:
                redis_server.stop()


def _measure(
    directory: Path, redis_url: str, connections: int, seconds: float, rates: Sequence[float]
) -> None:
    sub_port, sink_port, broker_port = free_port(), free_port(), free_port()
    triggers = directory / "knative"
    triggers.mkdir()
    (triggers / "eventing.yaml").write_text(MANIFESTS.format(subscriber=sub_port, sink=sink_port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VICTOR_")}
    broker_env = {
        **env,
        "REDIS_URL": redis_url,
        "PORT": str(broker_port),
        "VICTOR_TRIGGERS_PATH": str(triggers),
        "VICTOR_BROKER_STREAM": f"victor:bench-broker:{uuid.uuid4().hex}",
        "VICTOR_LOG_LEVEL": "WARNING",
    }
    role = [PYTHON, "-m", "bench.broker"]
    rows: list[list[object]] = []
    figures: dict[str, Any] = {}
    with (
        serving([*role, "subscriber", "--port", str(sub_port)], env, sub_port, directory, "/") as _,
        serving([*role, "sink", "--port", str(sink_port)], env, sink_port, directory, "/stats") as _,
        serving(
            [PYTHON, "-m", "eventing.cli", "serve", "broker"],
            broker_env,
            broker_port,
            directory,
            "/health/ready",
        ) as broker,
    ):
        assert broker.process is not None
        pid = broker.process.pid
        # Warm-up: connections, imports, the Redis stream and consumer groups.
        run_load(broker_port, "/victor/default", connections=4, events=500, seconds=5)
        wait_for_sink(sink_port, 500, 20)

        direct = run_load(sub_port, "/", connections=connections, events=10**9, seconds=seconds)
        rows.append(
            [
                "direct POST to subscriber (closed loop)",
                f"{direct.sent / direct.seconds:,.0f}",
                direct.p50_ms,
                direct.p99_ms,
                direct.errors,
            ]
        )
        figures["direct"] = {
            "events_per_s": direct.sent / direct.seconds,
            "p50_ms": direct.p50_ms,
            "p99_ms": direct.p99_ms,
        }

        _http(sink_port, "DELETE", "/stats")
        cpu_before = cpu_seconds(pid)
        saturated = run_load(
            broker_port, "/victor/default", connections=connections, events=10**9, seconds=seconds
        )
        latencies, last = wait_for_sink(sink_port, saturated.sent, 60)
        cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / max(1, len(latencies))
        through = len(latencies) / (last - saturated.first_sent) if latencies else 0.0
        rows.append(
            [
                "broker, saturated (closed loop ingress)",
                f"{through:,.0f} e2e ({saturated.sent / saturated.seconds:,.0f} ingress)",
                percentile(latencies, 0.5) * 1000,
                percentile(latencies, 0.99) * 1000,
                saturated.errors + saturated.sent - len(latencies),
            ]
        )
        figures["saturated"] = {
            "events_per_s": through,
            "ingress_per_s": saturated.sent / saturated.seconds,
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "lost": saturated.sent - len(latencies),
            "broker_cpu_ms_per_event": cpu_ms,
        }
        for rate in rates:
            _http(sink_port, "DELETE", "/stats")
            events = int(rate * seconds)
            paced = run_load(
                broker_port,
                "/victor/default",
                connections=connections,
                events=events,
                seconds=seconds * 3,
                rate=rate,
            )
            latencies, last = wait_for_sink(sink_port, paced.sent, 60)
            through = len(latencies) / (last - paced.first_sent) if latencies else 0.0
            p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
            rows.append(
                [
                    f"broker, paced at {rate:,.0f}/s",
                    f"{through:,.0f} e2e",
                    p50,
                    p99,
                    paced.errors + paced.sent - len(latencies),
                ]
            )
            figures[f"paced_{int(rate)}"] = {"events_per_s": through, "p50_ms": p50, "p99_ms": p99}
    print(table(["run", "events/s", "p50 ms", "p99 ms", "errors/lost"], rows))
    cpu_ms = figures["saturated"]["broker_cpu_ms_per_event"]
    print(
        f"\nbroker CPU per event (ingress + 2 deliveries + reply): {cpu_ms:.2f} ms "
        f"= {1000 / cpu_ms:,.0f} events per broker CPU-second"
    )
    print(
        f"\ngoal: >= {GOAL_EVENTS_PER_SECOND:,} events/s with p99 < {GOAL_P99_MS:.0f} ms end to end "
        f"(direct = one HTTP hop; the broker path is ingress + 2 deliveries + 1 reply hop)"
    )
    print_json("broker", figures)


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker")
    parser.add_argument("role", nargs="?", choices=("subscriber", "sink", "load"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "subscriber":
        _serve(subscriber, args.port)
    elif args.role == "sink":
        _serve(Sink(), args.port)
    elif args.role == "load":
        report = asyncio.run(
            load(
                args.port,
                args.path,
                connections=args.connections,
                events=args.events,
                seconds=args.seconds,
                rate=args.rate,
            )
        )
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        main()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
