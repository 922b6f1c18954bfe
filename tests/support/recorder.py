"""Real HTTP receivers for tests: one records every ASGI request, one every raw byte on the wire."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httptools

from common.cloudevents import CloudEvent, from_http


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def event(self) -> CloudEvent:
        return from_http(self.headers, self.body, max_bytes=1 << 24)


async def read_request(scope: dict[str, Any], receive: Any, send: Any) -> tuple[dict[str, str], bytes] | None:
    """One ASGI call of a test server: None once a lifespan ends, else the request's headers and body.

    Every raw test server (this recorder, the broker tests' `Subscriber`) starts the same way.
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return None
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}, body


class EventRecorder:
    """An ASGI app (serve it with `tests.support.servers.running`) that records requests."""

    def __init__(self, status: int = 202, body: bytes = b"", content_type: str = "application/json") -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.requests: list[RecordedRequest] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = await read_request(scope, receive, send)
        if request is None:
            return
        headers, body = request
        self.requests.append(RecordedRequest(scope["method"], scope["path"], headers, body))
        response_headers = [(b"content-type", self.content_type.encode())] if self.body else []
        await send({"type": "http.response.start", "status": self.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": self.body})

    async def wait_for(self, predicate: Any, limit: float = 30.0) -> list[CloudEvent]:
        """Poll until some recorded event satisfies `predicate`; returns the matching events."""
        for _ in range(int(limit / 0.05)):
            matching = [r.event() for r in self.requests if r.method == "POST" and predicate(r.event())]
            if matching:
                return matching
            await asyncio.sleep(0.05)
        return []


@dataclass(frozen=True)
class RawRequest:
    """One HTTP request as the bytes on the wire framed it: what a smuggled request would become."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


class RawRecorder:
    """A TCP server below any HTTP framework: keeps every byte and answers each request 202.

    A framework would refuse or normalise malformed input; this keeps the raw stream, and
    splits it into requests with httptools (llhttp), as any HTTP/1.1 server would.
    """

    def __init__(self) -> None:
        self.raw = bytearray()
        self.requests: list[RawRequest] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> RawRecorder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        recorder = self

        class Parsed:
            def __init__(self) -> None:
                self.target = b""
                self.headers: list[tuple[str, str]] = []
                self.body = bytearray()
                self.done = 0

            def on_message_begin(self) -> None:
                self.target, self.headers, self.body = b"", [], bytearray()

            def on_url(self, url: bytes) -> None:
                self.target += url

            def on_header(self, name: bytes, value: bytes) -> None:
                self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

            def on_body(self, body: bytes) -> None:
                self.body += body

            def on_message_complete(self) -> None:
                method = parser.get_method().decode()
                recorder.requests.append(
                    RawRequest(method, self.target.decode("latin-1"), self.headers, bytes(self.body))
                )
                self.done += 1

        parsed = Parsed()
        parser = httptools.HttpRequestParser(parsed)
        try:
            while data := await reader.read(65536):
                self.raw += data
                before = parsed.done
                parser.feed_data(data)
                for _ in range(parsed.done - before):
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (httptools.HttpParserError, ConnectionError, asyncio.CancelledError):
            pass  # a malformed stream, a client gone, or the recorder closing: the bytes are kept
        finally:
            writer.close()
