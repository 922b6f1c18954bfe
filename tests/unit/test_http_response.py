"""The one HTTP/1.1 response reader (broker deliveries and the benchmarks): exact framing, headers, reuse."""

from __future__ import annotations

import asyncio

import pytest

from eventing.broker.http_response import HTTPResponse, read_response


def stream(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_interim_answers_are_skipped_and_repeated_headers_joined() -> None:
    reader = stream(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nCe-Id: 1\r\nVary: a\r\nvary: b\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    )
    assert await read_response(reader, max_body=10) == HTTPResponse(
        200, {"ce-id": "1", "vary": "a, b", "content-length": "2"}, b"ok", True
    )
    assert (await read_response(reader, max_body=10)).status == 202


async def test_a_body_without_length_runs_to_the_close_and_the_connection_is_not_reused() -> None:
    response = await read_response(stream(b"HTTP/1.1 200 OK\r\n\r\nuntil close"), max_body=100)
    assert (response.body, response.keep_alive) == (b"until close", False)


async def test_connection_close_and_http_1_0_are_not_reused() -> None:
    closing = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    assert (await read_response(stream(closing), max_body=0)).keep_alive is False
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert (await read_response(stream(old), max_body=0)).keep_alive is False


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", "larger than 10 bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n", "larger"),
        (b"NOT HTTP\r\n\r\n", "malformed HTTP response head"),
    ],
)
async def test_oversized_and_malformed_answers_are_value_errors(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        await read_response(stream(data), max_body=10)
