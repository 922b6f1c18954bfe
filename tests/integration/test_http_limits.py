"""HTTP limits of every `victor serve` server, over real sockets against the real process.

The health function and the broker are each served by `victor serve`, and the health
function by `functions-framework --asgi` (gunicorn's uvicorn worker), with small
limits (16 KB of head, 20 fields, 1 s to send a head, 1 s of idle keep-alive),
and attacked the way issue 12 reports: huge and numerous headers, heads sent a
byte at a time, connections left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from common.settings import FUNCTION_NAMES
from tests.support.foundation import Served, clean_env, functions_framework, serving, victor_serve

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 20
HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 1.0
# Bounds that show a connection was closed by the limit and not by the test's own patience.
CLOSED_WITHIN = 8.0


@pytest.fixture(scope="module", params=["health", "broker", "functions-framework"])
async def served(
    request: pytest.FixtureRequest, services, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    root = tmp_path_factory.mktemp(f"limits-{request.param}")
    env = clean_env(
        **services.env(
            WORKSPACE_DIR=str(root),
            VICTOR_MAX_HEADER_BYTES="16KB",
            VICTOR_MAX_HEADERS=str(MAX_HEADERS),
            VICTOR_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
            VICTOR_KEEPALIVE_TIMEOUT=str(KEEPALIVE_TIMEOUT),
            VICTOR_BROKER_STREAM=f"victor:test:limits:{uuid.uuid4()}",
            # The broker resolves every Trigger's subscriber at start; nothing is delivered here.
            **{f"VICTOR_{name.upper()}_URL": "http://127.0.0.1:9" for name in FUNCTION_NAMES},
        )
    )
    argv = functions_framework() if request.param == "functions-framework" else victor_serve(request.param)
    async with serving(argv, env, root / "serve.log") as server:
        yield server


@contextlib.asynccontextmanager
async def connection(server: Served) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def head(*fields: str, target: str = "/health/live") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nhost: test\r\n" + "".join(f"{f}\r\n" for f in fields) + "\r\n"
    ).encode()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response (bounded wait)."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSED_WITHIN)
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines if line)
    headers = {name.lower(): value for name, value in headers.items()}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), CLOSED_WITHIN)
    return int(status_line.split()[1]), headers, body


async def closed_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection (reads must all come back empty)."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), CLOSED_WITHIN)
    assert data == b"", data[:200]
    return time.monotonic() - started


def rss_bytes(server: Served) -> int:
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_normal_request_with_many_headers_under_the_limits_is_answered(served: Served) -> None:
    fields = [f"x-field-{i}: {'v' * 500}" for i in range(MAX_HEADERS - 1)]  # host is the 20th
    async with connection(served) as (reader, writer):
        writer.write(head(*fields))
        status, _, body = await answer(reader)
        assert status == 200, body
        # The connection is kept alive: a second request on it is answered too.
        writer.write(head())
        assert (await answer(reader))[0] == 200


async def test_one_oversized_header_is_431_with_the_json_error_body(served: Served) -> None:
    async with connection(served) as (reader, writer):
        writer.write(head().removesuffix(b"\r\n") + b"x-big: " + b"a" * (MAX_HEADER_BYTES + 1024))
        status, headers, body = await answer(reader)
        assert status == 431
        assert headers["connection"] == "close"
        error = msgspec.json.decode(body)
        assert (error["status_code"], error["error"]) == (431, "headers_too_large")
        assert f"the request head is over {MAX_HEADER_BYTES} bytes" in error["detail"]
        await closed_after(reader)


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        # Under the count, over 16 KB in all.
        ([f"x-{i}: {'b' * 1000}" for i in range(MAX_HEADERS - 2)], f"over {MAX_HEADER_BYTES} bytes"),
        ([f"x-{i}: 1" for i in range(MAX_HEADERS + 5)], f"more than {MAX_HEADERS} header fields"),
    ],
    ids=["many small headers over the byte limit", "too many headers"],
)
async def test_a_head_over_a_limit_of_whole_headers_is_431(
    served: Served, fields: list[str], detail: str
) -> None:
    async with connection(served) as (reader, writer):
        writer.write(head(*fields))
        status, _, body = await answer(reader)
    assert status == 431
    assert detail in msgspec.json.decode(body)["detail"]


async def test_a_flood_of_header_bytes_is_cut_off_and_memory_stays_bounded(served: Served) -> None:
    """The issue's attack: one connection streaming headers (256 MB there; here until it is cut off)."""
    before = rss_bytes(served)
    sent = 0
    chunk = b"a" * (256 * 1024)
    async with connection(served) as (reader, writer):
        writer.write(head().removesuffix(b"\r\n") + b"x-flood: ")
        with contextlib.suppress(ConnectionError):
            while sent < 256 * 1024 * 1024:
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), CLOSED_WITHIN)
                sent += len(chunk)
    # Cut off long before 256 MB (the socket buffers of both ends hold a few MB at most).
    assert sent < 64 * 1024 * 1024
    assert rss_bytes(served) - before < 32 * 1024 * 1024
    async with connection(served) as (reader, writer):
        writer.write(head())
        assert (await answer(reader))[0] == 200


async def test_a_slow_header_socket_is_closed_after_the_header_timeout(served: Served) -> None:
    async with connection(served) as (reader, writer):
        writer.write(b"GET /health/live HTTP/1.1\r\nhost: test\r\n")

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(100):
                    writer.write(b"x")  # a byte every 0.2 s: never a whole header
                    await writer.drain()
                    await asyncio.sleep(0.2)

        dripping = asyncio.create_task(trickle())
        try:
            waited = await closed_after(reader)
        finally:
            dripping.cancel()
    assert waited >= HEADER_TIMEOUT * 0.5


async def test_many_idle_sockets_are_all_closed_and_the_server_keeps_answering(served: Served) -> None:
    sockets = [
        await asyncio.open_connection(*served.url.removeprefix("http://").split(":")) for _ in range(50)
    ]
    for _, writer in sockets[::2]:
        writer.write(b"GET / HTTP/1.1\r\n")  # half started a head, half sent nothing
    try:
        async with connection(served) as (reader, writer):
            writer.write(head())
            assert (await answer(reader))[0] == 200
        waits = await asyncio.gather(*(closed_after(reader) for reader, _ in sockets))
        assert len(waits) == 50
    finally:
        for _, writer in sockets:
            writer.close()


async def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(served: Served) -> None:
    async with connection(served) as (reader, writer):
        writer.write(head())
        assert (await answer(reader))[0] == 200
        waited = await closed_after(reader)
    # Closed by our setting (1 s), not by uvicorn's default of 5 s.
    assert waited < KEEPALIVE_TIMEOUT + 3
