"""Payloads of `ai.victor.chat.requested`, `ai.victor.chat.completed` and `ai.victor.chat.failed`."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from eventing.schemas.event_type import EventType, Payload, StoredText

# An answer's token limit, as a request may set it (stored in a PostgreSQL `integer` column).
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class ChatRequested(Payload, kw_only=True):
    """A user message for a conversation; `request_id` and `conversation_id` default from the event."""

    message: StoredText
    request_id: StoredText | None = None
    conversation_id: StoredText | None = None
    system: StoredText | None = None
    model: StoredText | None = None
    max_tokens: MaxTokens | None = None
    # Publish text deltas, tool calls and results on the request's Redis channel as they happen.
    stream: bool = False


class Usage(msgspec.Struct, kw_only=True):
    """Tokens and cost of one or more LLM calls; cost in US dollars from the price table."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0


class ToolCallRecord(msgspec.Struct, kw_only=True):
    """A tool call the model made during a request, with its result once it ran."""

    id: str
    name: str
    arguments: dict[str, Any]
    turn: int
    is_error: bool | None = None
    content: str | None = None
    duration_ms: float | None = None


class ChatCompleted(Payload, kw_only=True):
    """The model's final answer to one request, with every tool call made and the summed usage."""

    conversation_id: str
    request_id: str
    answer: str
    stop_reason: str
    provider: str
    model: str
    llm_calls: int
    tool_calls: list[ToolCallRecord]
    usage: Usage
    # Models of this request missing from the price table: `usage.cost_usd` leaves their calls out.
    unpriced_models: list[str] = msgspec.field(default_factory=list)


class ChatFailed(Payload, kw_only=True):
    """A request that ended without an answer; `code` says why in one word, `error` in one sentence."""

    conversation_id: str
    request_id: str
    code: str
    error: str
    provider_status: int | None = None


# Extension attribute carrying the conversation an event belongs to.
CONVERSATION_ID = "conversationid"

CHAT_REQUESTED_EVENT = EventType("ai.victor.chat.requested", ChatRequested)
CHAT_REQUESTED = CHAT_REQUESTED_EVENT.name
CHAT_COMPLETED_EVENT = EventType("ai.victor.chat.completed", ChatCompleted)
CHAT_COMPLETED = CHAT_COMPLETED_EVENT.name
CHAT_FAILED_EVENT = EventType("ai.victor.chat.failed", ChatFailed)
CHAT_FAILED = CHAT_FAILED_EVENT.name
