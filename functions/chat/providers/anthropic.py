"""Anthropic Messages API through the official SDK (`anthropic.AsyncAnthropic`).

The SDK's own retries are off (`max_retries=0`) so that one policy
(`base.with_retries`) governs every provider. Prompt caching: the system
prompt and the last tool definition carry `cache_control`, so the stable
prefix of every call (tools, then system) is cached by Anthropic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import msgspec

from common.settings import Settings
from functions.chat.providers.base import (
    Block,
    ModelRequest,
    ModelTurn,
    ProviderError,
    TextBlock,
    TextDelta,
    TokenUsage,
    ToolUseBlock,
    is_retryable_status,
    retry_after_seconds,
    with_retries,
)
from functions.chat.settings import ChatSettings

EPHEMERAL = {"type": "ephemeral"}


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, settings: Settings, chat: ChatSettings) -> None:
        assert settings.anthropic_api_key is not None  # build_provider checks this
        self.chat = chat
        # Hears of each retry (the error and the wait); tests and metrics use it.
        self.on_retry: Callable[[ProviderError, float], None] | None = None
        self.client = anthropic.AsyncAnthropic(
            api_key=settings.anthropic_api_key.reveal(),
            base_url=settings.anthropic_base_url,
            max_retries=0,
            timeout=chat.timeout,
        )

    async def close(self) -> None:
        await self.client.close()

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

        async def attempt() -> ModelTurn:
            try:
                message = await self.client.messages.create(**arguments)
            except anthropic.APIError as exc:
                raise provider_error(exc) from exc
            return to_turn(message)

        return await with_retries(self.chat, self.name, attempt, self.on_retry)

    async def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelTurn]:
        arguments = self.arguments(request)

        async def open_stream() -> tuple[Any, Any]:
            manager = self.client.messages.stream(**arguments)
            try:
                return manager, await manager.__aenter__()
            except anthropic.APIError as exc:
                raise provider_error(exc) from exc

        # Retries happen only while opening: once text has been yielded a retry would repeat it.
        manager, stream = await with_retries(self.chat, self.name, open_stream, self.on_retry)
        try:
            async for event in stream:
                if event.type == "text" and event.text:
                    yield TextDelta(text=event.text)
            message = await stream.get_final_message()
        except anthropic.APIError as exc:
            await manager.__aexit__(None, None, None)
            raise provider_error(exc) from exc
        await manager.__aexit__(None, None, None)
        yield to_turn(message)


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


def provider_error(exc: anthropic.APIError) -> ProviderError:
    """The SDK's error as a `ProviderError` carrying the provider's own message."""
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError(408, "Anthropic did not answer within the timeout", retryable=False)
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(0, f"cannot reach Anthropic: {exc.message}", retryable=True)
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code >= 400:
        status = exc.status_code
        detail = exc.message
        body = exc.body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            detail = f"{error.get('type', 'error')}: {error.get('message', '')}"
        return ProviderError(
            status,
            f"Anthropic answered {status}: {detail}",
            retryable=is_retryable_status(status),
            retry_after=retry_after_seconds(exc.response.headers),
        )
    # An error event inside an SSE stream (for example overloaded_error) has no HTTP status.
    return ProviderError(502, f"Anthropic stream failed: {exc.message}", retryable=False)
