"""A local HTTP server that speaks the Anthropic Messages API, for tests and benchmarks.

It answers `POST /v1/messages` from a script: each test pushes the replies
(`Reply`) and failures (`Failure`) the server gives, in order. Non-streaming
requests get the JSON message; `stream: true` gets the real SSE sequence
(message_start, ping, content_block_start / content_block_delta with
text_delta or input_json_delta partial JSON / content_block_stop,
message_delta, message_stop). Error answers carry Anthropic's error body and
retry-after. Every request is recorded so tests can assert what the SDK sent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import msgspec

from tests.support.fake_llm import Failure, RecordedRequest, ScriptedServer, pieces, respond, start_sse

_ids = itertools.count(1)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(id: str, name: str, input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": name, "input": input}


@dataclass
class Reply:
    """One model message: content blocks and usage (cache tokens included)."""

    content: list[dict[str, Any]]
    input_tokens: int = 10
    output_tokens: int = 5
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    stop_reason: str | None = None  # default: tool_use when a block is one, else end_turn
    delay: float = 0.0  # seconds before answering (for timeouts)
    chunk: int = 7  # characters per streamed delta

    @property
    def stop(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        return "tool_use" if any(b["type"] == "tool_use" for b in self.content) else "end_turn"


class FakeAnthropic(ScriptedServer):
    """An ASGI app: serve it with `tests.support.servers.running` and point ANTHROPIC_BASE_URL at it."""

    route = "/v1/messages"

    async def answer(self, send: Any, request: RecordedRequest, item: Reply) -> None:
        model = str(request.body.get("model", "claude-test"))
        if request.body.get("stream"):
            await self.stream(send, item, model)
        else:
            await respond(
                send, 200, msgspec.json.encode(self.message(item, model)), {"request-id": "req_fake"}
            )

    @staticmethod
    def message(reply: Reply, model: str) -> dict[str, Any]:
        return {
            "id": f"msg_fake{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": reply.content,
            "stop_reason": reply.stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "cache_read_input_tokens": reply.cache_read_input_tokens,
                "cache_creation_input_tokens": reply.cache_creation_input_tokens,
            },
        }

    @staticmethod
    async def error(send: Any, failure: Failure) -> None:
        body = {
            "type": "error",
            "error": {"type": ERROR_TYPES.get(failure.status, "api_error"), "message": failure.message},
        }
        headers = {"request-id": "req_fake_error", "x-should-retry": "false"}
        if failure.retry_after is not None:
            headers["retry-after"] = failure.retry_after
        await respond(send, failure.status, msgspec.json.encode(body), headers)

    async def stream(self, send: Any, reply: Reply, model: str) -> None:
        await start_sse(send)

        async def event(name: str, data: dict[str, Any]) -> None:
            payload = b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"
            await send({"type": "http.response.body", "body": payload, "more_body": True})

        start = self.message(reply, model)
        start["content"], start["stop_reason"] = [], None
        start["usage"] = dict(start["usage"], output_tokens=1)
        await event("message_start", {"type": "message_start", "message": start})
        await event("ping", {"type": "ping"})
        for index, block in enumerate(reply.content):
            if block["type"] == "text":
                await event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                for piece in pieces(block["text"], reply.chunk):
                    delta = {"type": "text_delta", "text": piece}
                    await event(
                        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                    )
            else:
                opened = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                await event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opened},
                )
                # Anthropic sends the input as partial JSON, starting with an empty piece.
                for piece in ["", *pieces(msgspec.json.encode(block["input"]).decode(), reply.chunk)]:
                    delta = {"type": "input_json_delta", "partial_json": piece}
                    await event(
                        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                    )
            await event("content_block_stop", {"type": "content_block_stop", "index": index})
        await event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop, "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
        await event("message_stop", {"type": "message_stop"})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
