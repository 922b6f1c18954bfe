"""A real HTTP receiver for tests: records every request and answers with a fixed status."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

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
