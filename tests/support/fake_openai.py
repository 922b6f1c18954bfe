"""A local HTTP server that speaks OpenAI chat completions (as OpenAI, vLLM and Ollama do).

`POST /v1/chat/completions` answers from the same kind of script as the fake
Anthropic server: JSON completions, or with `stream: true` the chunk sequence
(role, content deltas, tool_calls deltas with partial arguments, finish_reason,
a usage chunk when `stream_options.include_usage`, then `[DONE]`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tests.support.fake_llm import Failure, RecordedRequest, ScriptedServer, pieces, respond, start_sse

_ids = itertools.count(1)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    429: "rate_limit_exceeded",
    500: "server_error",
}


@dataclass
class Completion:
    """One assistant message: text and/or tool calls ({id, name, arguments}), with usage."""

    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int = 0
    delay: float = 0.0
    chunk: int = 7

    @property
    def finish(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


class FakeOpenAI(ScriptedServer):
    """An ASGI app; point OPENAI_BASE_URL at `<url>/v1`."""

    route = "/v1/chat/completions"

    async def answer(self, send: Any, request: RecordedRequest, item: Completion) -> None:
        assert isinstance(item, Completion), "script the fake OpenAI server with Completion items"
        model = str(request.body.get("model", "gpt-test"))
        if request.body.get("stream"):
            include_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
            await self.stream(send, item, model, include_usage)
        else:
            await respond(send, 200, msgspec.json.encode(self.completion(item, model)))

    @staticmethod
    def usage(item: Completion) -> dict[str, Any]:
        return {
            "prompt_tokens": item.prompt_tokens,
            "completion_tokens": item.completion_tokens,
            "total_tokens": item.prompt_tokens + item.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": item.cached_tokens},
        }

    def completion(self, item: Completion, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": item.text}
        if item.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": msgspec.json.encode(call["arguments"]).decode(),
                    },
                }
                for call in item.tool_calls
            ]
        return {
            "id": f"chatcmpl-fake{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": item.finish, "logprobs": None}],
            "usage": self.usage(item),
        }

    @staticmethod
    async def error(send: Any, failure: Failure) -> None:
        error_type = ERROR_TYPES.get(failure.status, "server_error")
        body = {"error": {"message": failure.message, "type": error_type, "param": None, "code": error_type}}
        headers = {"retry-after": failure.retry_after} if failure.retry_after is not None else {}
        headers["x-should-retry"] = "false"
        await respond(send, failure.status, msgspec.json.encode(body), headers)

    async def stream(self, send: Any, item: Completion, model: str, include_usage: bool) -> None:
        await start_sse(send)
        base = {
            "id": f"chatcmpl-fake{next(_ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
        }

        async def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> None:
            data = dict(base, model=model, choices=choices, usage=usage)
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + msgspec.json.encode(data) + b"\n\n",
                    "more_body": True,
                }
            )

        await chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in pieces(item.text, item.chunk) if item.text else []:
            await chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        for index, call in enumerate(item.tool_calls):
            opened = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            await chunk([{"index": 0, "delta": {"tool_calls": [opened]}, "finish_reason": None}])
            for piece in pieces(msgspec.json.encode(call["arguments"]).decode(), item.chunk):
                delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                await chunk([{"index": 0, "delta": delta, "finish_reason": None}])
        await chunk([{"index": 0, "delta": {}, "finish_reason": item.finish}])
        if include_usage:
            await chunk([], self.usage(item))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
