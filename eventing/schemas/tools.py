"""Payloads of `ai.victor.tools.requested` and `ai.victor.tools.completed`."""

from __future__ import annotations

from typing import Any

import msgspec

from eventing.schemas.event_type import EventType, Payload, StoredText, Turn


class ToolCall(msgspec.Struct, kw_only=True):
    """One tool call the model asked for; `id` is the model's tool_use id."""

    id: StoredText
    name: StoredText
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)


class ToolResult(msgspec.Struct, kw_only=True):
    """The outcome of one call; a failed call has `is_error` and a message in `content`."""

    id: StoredText
    name: StoredText
    is_error: bool
    content: StoredText
    duration_ms: float = 0.0
    # A short machine-readable reason when `is_error` (e.g. "outside_workspace", "timeout").
    error: StoredText | None = None


class ToolsRequested(Payload, kw_only=True):
    """Every tool call of one model turn, to run together."""

    conversation_id: StoredText
    turn: Turn
    calls: list[ToolCall]


class ToolsCompleted(Payload, kw_only=True):
    """The results of a `ToolsRequested`, in the order of its calls."""

    conversation_id: StoredText
    turn: Turn
    results: list[ToolResult]


TOOLS_REQUESTED_EVENT = EventType("ai.victor.tools.requested", ToolsRequested)
TOOLS_REQUESTED = TOOLS_REQUESTED_EVENT.name
TOOLS_COMPLETED_EVENT = EventType("ai.victor.tools.completed", ToolsCompleted)
TOOLS_COMPLETED = TOOLS_COMPLETED_EVENT.name
