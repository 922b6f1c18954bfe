"""Anthropic Messages API through the official SDK (`anthropic.AsyncAnthropic`).

The SDK's own retries are off (`max_retries=0`) so that one policy
(`base.with_retries`, through `base.SDKProvider`) governs every provider. Prompt caching: the system
prompt and the last tool definition carry `cache_control`, so the stable
prefix of every call (tools, then system) is cached by Anthropic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import msgspec

from common.settings import Settings
from functions.chat.providers.base import (
    Block,
    ModelRequest,
    ModelTurn,
    SDKErrors,
    SDKProvider,
    TextBlock,
    TextDelta,
    TokenUsage,
    ToolUseBlock,
)
from functions.chat.settings import ChatSettings

EPHEMERAL = {"type": "ephemeral"}


def status_detail(exc: anthropic.APIStatusError) -> str:
    """Anthropic's error body names the error's type and says what went wrong."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{error.get('type', 'error')}: {error.get('message', '')}"
    return exc.message


ERRORS = SDKErrors.of(anthropic, server="Anthropic", stream="Anthropic stream", detail=status_detail)


class AnthropicProvider(SDKProvider):
    name = "anthropic"
    errors = ERRORS

    def __init__(self, settings: Settings, chat: ChatSettings) -> None:
        assert settings.anthropic_api_key is not None  # build_provider checks this
        super().__init__(chat)
        self.client = anthropic.AsyncAnthropic(
            api_key=settings.anthropic_api_key.reveal(),
            base_url=settings.anthropic_base_url,
            max_retries=0,
            timeout=chat.timeout,
        )

    def arguments(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of `messages.create` for `request`, with cache breakpoints."""
        arguments: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": msgspec.to_builtins(request.messages),
        }
        if request.system:
            arguments["system"] = [{"type": "text", "text": request.system, "cache_control": EPHEMERAL}]
        if request.tools:
            tools = msgspec.to_builtins(request.tools)
            tools[-1]["cache_control"] = EPHEMERAL
            arguments["tools"] = tools
        if request.temperature is not None:
            # This SDK version has no `temperature` parameter; the API field is sent as is.
            arguments["extra_body"] = {"temperature": request.temperature}
        return arguments

    async def complete(self, request: ModelRequest) -> ModelTurn:
        arguments = self.arguments(request)

        async def call() -> ModelTurn:
            return to_turn(await self.client.messages.create(**arguments))

        return await self.retried(call)

    async def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelTurn]:
        arguments = self.arguments(request)

        async def open_stream() -> tuple[Any, Any]:
            manager = self.client.messages.stream(**arguments)
            return manager, await manager.__aenter__()

        # Retries happen only while opening: once text has been yielded a retry would repeat it.
        manager, stream = await self.retried(open_stream)
        try:
            async for event in stream:
                if event.type == "text" and event.text:
                    yield TextDelta(text=event.text)
            turn = to_turn(await stream.get_final_message())
        except Exception as exc:  # an SDK error, or an answer that is not the stream the API sends
            await manager.__aexit__(None, None, None)
            raise self.mapped(exc) from exc
        await manager.__aexit__(None, None, None)
        yield turn


def to_turn(message: Any) -> ModelTurn:
    content: list[Block] = []
    for block in message.content:
        if block.type == "text":
            content.append(TextBlock(text=block.text))
        elif block.type == "tool_use":
            content.append(ToolUseBlock(id=block.id, name=block.name, input=dict(block.input or {})))
    usage = message.usage
    return ModelTurn(
        content=content,
        stop_reason=message.stop_reason or "end_turn",
        model=message.model,
        usage=TokenUsage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_tokens=getattr(usage, "cache_read_input_tokens", None) or 0,
            cache_write_tokens=getattr(usage, "cache_creation_input_tokens", None) or 0,
        ),
    )
