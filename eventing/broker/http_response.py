"""Reading one HTTP/1.1 response from an asyncio stream, exactly and no further.

httptools (llhttp, the parser uvicorn uses) parses the status line and the
headers; the body is read to the length the headers frame (Content-Length,
chunked, or until the server closes), so a kept-alive connection is left at
the start of the next response. The broker's subscriber client and the
benchmarks' load generator both read their answers here.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import httptools


class HTTPResponse(NamedTuple):
    """Status, headers (lower-cased names, repeated ones joined by ", "), body, and whether to reuse."""

    status: int
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class _Head:
    """The httptools callbacks this reader needs: the headers, as they arrive."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").strip().lower()
        text = value.decode("latin-1").strip()
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text


async def read_response(reader: asyncio.StreamReader, *, max_body: int) -> HTTPResponse:
    """The next final response on `reader` (1xx interim answers but 101 are skipped).

    Raises `ValueError` for a malformed answer or a body over `max_body` bytes,
    and asyncio's `IncompleteReadError` / `LimitOverrunError` as the stream does.
    """
    while True:
        head_bytes = await reader.readuntil(b"\r\n\r\n")
        head = _Head()
        parser = httptools.HttpResponseParser(head)
        try:
            parser.feed_data(head_bytes)
        except httptools.HttpParserError as exc:
            raise ValueError(f"malformed HTTP response head: {exc}") from None
        status = parser.get_status_code()
        if status >= 200 or status == 101:
            break  # 1xx interim answers (100 Continue) come before the real one
    headers = head.headers
    keep = parser.get_http_version() == "1.1" and "close" not in headers.get("connection", "").lower()
    if status in (204, 304):
        return HTTPResponse(status, headers, b"", keep)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return HTTPResponse(status, headers, await _read_chunks(reader, max_body), keep)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > max_body:
            raise ValueError(f"the answer is larger than {max_body} bytes")
        return HTTPResponse(status, headers, await reader.readexactly(length), keep)
    content = await reader.read(max_body + 1)  # no length: the body ends when the server closes
    return HTTPResponse(status, headers, content, False)


async def _read_chunks(reader: asyncio.StreamReader, max_body: int) -> bytes:
    chunks = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return bytes(chunks)
        if len(chunks) + size > max_body:
            raise ValueError(f"the answer is larger than {max_body} bytes")
        chunks += (await reader.readexactly(size + 2))[:-2]
