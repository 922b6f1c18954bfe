"""What the fake LLM servers share: the script, the request record and the ASGI scaffolding.

A fake provider (`FakeAnthropic`, `FakeOpenAI`) names its one route and says how
it words an error and how it answers a scripted item; everything else — serving
the lifespan, recording each request, the 404 for other paths, answering
`Failure`s, waiting a reply's `delay` — is here once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from tests.support.recorder import read_request


@dataclass
class Failure:
    """An error answer with the provider's error body and optional retry-after (seconds)."""

    status: int
    message: str = "scripted failure"
    retry_after: str | None = None


@dataclass
class Malformed:
    """A 200 answer that breaks the provider's protocol: `body` as is, whatever the request asked for
    (a plain JSON body to a streaming request, garbage SSE, a message with fields missing)."""

    body: bytes
    content_type: str = "application/json"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class ScriptedServer:
    """The script and the record shared by the fake providers; an ASGI app answering `route`."""

    # The one path (POST) the provider answers; the subclass names it.
    route: ClassVar[str]
    # Replies (Reply for Anthropic, Completion for OpenAI), Failures and Malformed answers, in order.
    script: deque[Any] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    # Answered when the script is empty (benchmarks use it to repeat one reply forever).
    default: Any = None

    def push(self, *items: Any) -> None:
        self.script.extend(items)

    def next_item(self) -> Any:
        if self.script:
            return self.script.popleft()
        if self.default is not None:
            return self.default
        return Failure(500, "the fake server's script is empty")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        incoming = await read_request(scope, receive, send)
        if incoming is None:
            return
        headers, raw = incoming
        request = RecordedRequest(
            scope["method"],
            scope["path"],
            {key.lower(): value for key, value in headers.items()},
            msgspec.json.decode(raw) if raw else {},
        )
        self.requests.append(request)
        if (request.method, request.path) != ("POST", self.route):
            await self.error(send, Failure(404, f"no route {request.method} {request.path}"))
            return
        item = self.next_item()
        if isinstance(item, Failure):
            await self.error(send, item)
            return
        if isinstance(item, Malformed):
            await respond(send, 200, item.body, content_type=item.content_type)
            return
        if item.delay:
            await asyncio.sleep(item.delay)
        await self.answer(send, request, item)

    @staticmethod
    async def error(send: Any, failure: Failure) -> None:
        """Answer `failure` with the provider's own error body and headers."""
        raise NotImplementedError

    async def answer(self, send: Any, request: RecordedRequest, item: Any) -> None:
        """Answer a scripted reply: JSON, or SSE when the request asked to stream."""
        raise NotImplementedError


async def respond(
    send: Any,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    content_type: str = "application/json",
) -> None:
    pairs = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    pairs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": body})


async def start_sse(send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )


def pieces(value: str, size: int) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]
