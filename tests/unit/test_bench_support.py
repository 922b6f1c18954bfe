"""The benchmarks' shared pieces: statistics, the HTTP/1.1 reader, the load generator, tables."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys

from litestar import Litestar, Request, Response, get

from bench.support import cpu_seconds, drive, percentile, read_response, table
from tests.support.servers import running


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([3.0, 1.0, 2.0], 0.9) == 3.0
    assert math.isnan(percentile([], 0.5))


def test_table_is_markdown_with_columns_padded_to_the_widest_cell() -> None:
    assert table(["app", "req/s"], [["a", 1234.5], ["longer name", 0.25]]) == (
        "| app         | req/s   |\n"
        "| ----------- | ------- |\n"
        "| a           | 1,234.5 |\n"
        "| longer name | 0.25    |"
    )


async def test_read_response_reads_sized_and_chunked_bodies_in_turn() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    )
    reader.feed_eof()
    assert [await read_response(reader) for _ in range(3)] == [200, 201, 404]
    assert await reader.read() == b""


def make_counting_app(seen: list[str]) -> Litestar:
    @get("/hit", sync_to_thread=False)
    def hit(request: Request[object, object, object]) -> Response[str]:
        seen.append(request.headers.get("x-bench", ""))
        return Response("ok", status_code=200 if request.headers.get("x-bench") == "1" else 418)

    return Litestar(route_handlers=[hit])


async def test_drive_sends_exactly_the_requests_asked_for_with_the_given_headers() -> None:
    seen: list[str] = []
    async with running(make_counting_app(seen)) as url:
        port = int(url.rsplit(":", 1)[1])
        result = await drive(port, "/hit", connections=4, requests=40, seconds=120, headers=["x-bench: 1"])
        assert (result.requests, result.errors) == (40, 0)
        assert seen == ["1"] * 40
        refused = await drive(port, "/hit", connections=2, requests=6, seconds=120)
        assert (refused.requests, refused.errors) == (6, 6)
    assert result.p50_ms <= result.p99_ms


def test_cpu_seconds_counts_a_process_and_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "sum(range(30_000_000)); input()"], stdin=subprocess.PIPE)
    try:
        for _ in range(500):  # the child burns CPU, then waits on stdin; bounded poll until it has
            own = cpu_seconds(child.pid)
            if own > 0.1:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert cpu_seconds(os.getpid()) >= own > 0.1  # the test process's total includes its child
    finally:
        child.communicate(b"\n", timeout=30)
    assert cpu_seconds(child.pid) == 0.0  # gone: nothing to count
