"""OpenAI-compatible routes on chat: `POST /v1/chat/completions` and `GET /v1/models`.

Model `victor` is the server-side agent loop of POST /v1/chat (the workspace
tools, the conversation store, the broker when there is one) behind the API
that editors and agents already speak. The last message is the new user
turn; system (and developer) messages become the system prompt; earlier
turns of a new conversation are given to the model as a transcript ahead of
the question. A `conversation_id` body field or `X-Conversation-Id` header
continues a stored conversation (the answer names it in the same field and
header). Client-side `tools` are ignored: Victor runs its own tools.

Streaming sends `chat.completion.chunk` frames: text as `delta.content`, each
tool call and result as `delta.reasoning_content` (the field reasoning models
use, which OpenAI-compatible clients show apart from the answer), usage in the
final chunk, then `data: [DONE]`; `: ping` comments keep a quiet stream open. Errors use OpenAI's envelope
`{"error": {"message", "type", "param", "code"}}` on these routes only.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec

from common import sse
from common.answers import Refusal, StreamedAnswer, json_answer
from common.function import Call
from common.openai_api import ModelCard, ModelList, error_body
from eventing.schemas.chat import MaxTokens
from eventing.schemas.event_type import StoredText
from functions.chat import progress_channel
from functions.chat.handlers import Chat, ChatBody, ChatRun, failure_refusal, start_chat

MODEL = "victor"
# How much of a tool's result a streamed activity line shows.
RESULT_PREVIEW = 200


class ContentPart(msgspec.Struct, kw_only=True):
    type: str
    text: StoredText | None = None


class OpenAIMessage(msgspec.Struct, kw_only=True):
    role: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    content: StoredText | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content or [] if part.type == "text")


class CompletionsBody(msgspec.Struct, kw_only=True):
    """The body of POST /v1/chat/completions; fields OpenAI defines and Victor does not use are accepted."""

    model: Annotated[StoredText, msgspec.Meta(min_length=1, max_length=200)]
    messages: Annotated[list[OpenAIMessage], msgspec.Meta(min_length=1)]
    stream: bool = False
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    # Victor's extension: continue a stored conversation.
    conversation_id: Annotated[StoredText, msgspec.Meta(min_length=1, max_length=200)] | None = None


def chat_body(call: Call[CompletionsBody]) -> ChatBody:
    """The POST /v1/chat request an OpenAI request stands for; 404 for a model other than `victor`."""
    body = call.body
    if body.model != MODEL:
        raise Refusal(404, f"the model {body.model!r} does not exist; use {MODEL!r}", "model_not_found")
    system = "\n\n".join(m.text() for m in body.messages if m.role in ("system", "developer")) or None
    turns = [m for m in body.messages if m.role not in ("system", "developer")]
    if not turns or turns[-1].role != "user" or not turns[-1].text():
        raise Refusal(422, "the last message must be a user message with text", "invalid_request")
    headers = {key.lower(): value for key, value in call.headers.items()}
    conversation_id = body.conversation_id or headers.get("x-conversation-id") or None
    message = turns[-1].text()
    if conversation_id is None and len(turns) > 1:
        # A new conversation sent whole: the stored one starts here, so earlier turns travel as text.
        transcript = "\n\n".join(f"{m.role}: {m.text()}" for m in turns[:-1])
        message = f"Earlier in this conversation:\n\n{transcript}\n\nNow: {message}"
    return ChatBody(
        message=message,
        conversation_id=conversation_id,
        system=system,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stream=body.stream,
    )


async def post_completions(call: Call[CompletionsBody], runtime: Chat) -> Any:
    """A `chat.completion`, or with `stream: true` `chat.completion.chunk` frames and `data: [DONE]`."""
    run = await start_chat(runtime, chat_body(call))
    headers = {"x-conversation-id": run.conversation_id, "x-request-id": run.request_id}
    if call.body.stream:
        headers = {**headers, "content-type": "text/event-stream", "cache-control": "no-cache"}
        return StreamedAnswer(200, headers, sse.with_pings(_chunks(run), run.loop.chat.sse_ping))
    final = await run.outcome()
    if final.kind != "done":
        raise failure_refusal(final.data)
    done = final.data
    completion = {
        **_envelope(run, "chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": done["answer"], "refusal": None},
                "finish_reason": finish_reason(done),
                "logprobs": None,
            }
        ],
        "usage": usage(done),
    }
    return json_answer(200, completion, headers)


async def get_models(call: Call[None], runtime: Chat) -> ModelList:
    """The one model, `victor`: the agent loop."""
    return ModelList(data=[ModelCard(id=MODEL)])


def finish_reason(done: dict[str, Any]) -> str:
    return "length" if done.get("stop_reason") == "max_tokens" else "stop"


def usage(done: dict[str, Any]) -> dict[str, int]:
    """OpenAI's usage: prompt tokens include the cached ones, as OpenAI counts them."""
    counted = done.get("usage") or {}
    prompt = sum(int(counted.get(k, 0)) for k in ("input_tokens", "cache_read_tokens", "cache_write_tokens"))
    completion = int(counted.get("output_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _envelope(run: ChatRun, kind: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{run.request_id}",
        "object": kind,
        "created": int(time.time()),
        "model": MODEL,
        "system_fingerprint": None,
        "conversation_id": run.conversation_id,
    }


def _frame(value: Any) -> bytes:
    return sse.frame(msgspec.json.encode(value))


def _chunk(run: ChatRun, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return _frame({**_envelope(run, "chat.completion.chunk"), "choices": [choice], **extra})


def activity(message: progress_channel.StreamMessage) -> str:
    """One line telling what a tool call or result was, for the reasoning channel."""
    data = message.data
    if message.kind == "tool_call":
        return f"→ {data.get('name')}({json.dumps(data.get('arguments') or {}, sort_keys=True)})\n"
    content = str(data.get("content") or "")
    preview = content[:RESULT_PREVIEW] + ("…" if len(content) > RESULT_PREVIEW else "")
    status = "error" if data.get("is_error") else "ok"
    return f"← {data.get('name')} {status} ({len(content)} chars): {preview}\n"


async def _chunks(run: ChatRun) -> AsyncIterator[bytes]:
    yield _chunk(run, {"role": "assistant", "content": ""})
    async for message in run.progress():
        if message.kind == "text":
            yield _chunk(run, {"content": message.data.get("text", "")})
        elif message.kind in ("tool_call", "tool_result"):
            yield _chunk(run, {"reasoning_content": activity(message)})
        elif message.kind == "done":
            yield _chunk(run, {}, finish_reason(message.data), usage=usage(message.data))
        else:
            refusal = failure_refusal(message.data)
            kind = "server_error" if refusal.status >= 500 else "invalid_request_error"
            yield _frame({"error": error_body(refusal.message, kind, refusal.code)})
    yield b"data: [DONE]\n\n"
