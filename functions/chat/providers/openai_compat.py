"""OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, LM Studio) through `openai.AsyncOpenAI`.

Anthropic-shaped blocks are translated to chat-completions messages: tool_use
blocks become the assistant's `tool_calls`, tool_result blocks become `tool`
messages. Usage is normalised so `input_tokens` excludes cached prompt tokens,
as Anthropic reports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import openai

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
    ToolResultBlock,
    ToolUseBlock,
)
from functions.chat.settings import ChatSettings

STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
}


def status_detail(exc: openai.APIStatusError) -> str:
    # The SDK keeps the body's `error` object; its message is the server's own words.
    if isinstance(exc.body, dict) and isinstance(exc.body.get("message"), str):
        return str(exc.body["message"])
    return exc.message


ERRORS = SDKErrors.of(
    openai, server="the OpenAI-compatible server", stream="the OpenAI-compatible stream", detail=status_detail
)


class OpenAICompatProvider(SDKProvider):
    name = "openai"
    errors = ERRORS

    def __init__(self, settings: Settings, chat: ChatSettings) -> None:
        super().__init__(chat)
        # Local servers (Ollama, vLLM) take any key; the SDK insists on one.
        key = settings.openai_api_key.reveal() if settings.openai_api_key else "unused"
        self.client = openai.AsyncOpenAI(
            api_key=key, base_url=settings.openai_base_url, max_retries=0, timeout=chat.timeout
        )

    def arguments(self, request: ModelRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": to_openai_messages(request),
        }
        if request.tools:
            arguments["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.input_schema},
                }
                for t in request.tools
            ]
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        return arguments

    async def complete(self, request: ModelRequest) -> ModelTurn:
        arguments = self.arguments(request)

        async def call() -> ModelTurn:
            return to_turn(await self.client.chat.completions.create(**arguments))

        return await self.retried(call)

    async def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelTurn]:
        arguments = self.arguments(request)
        arguments["stream"] = True
        arguments["stream_options"] = {"include_usage": True}

        stream = await self.retried(lambda: self.client.chat.completions.create(**arguments))
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish: str | None = None
        model = request.model
        usage = TokenUsage()
        try:
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = to_usage(chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        yield TextDelta(text=delta.content)
                    for call in delta.tool_calls or []:
                        entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        if call.id:
                            entry["id"] = call.id
                        if call.function is not None:
                            entry["name"] += call.function.name or ""
                            entry["arguments"] += call.function.arguments or ""
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except Exception as exc:  # an SDK error, or chunks that are not the API's
            raise self.mapped(exc) from exc
        if finish is None:  # a JSON body, or a stream cut short, reads as chunks without an ending
            raise self.mapped(ValueError("the stream ended without a finish_reason"))
        content: list[Block] = [TextBlock(text="".join(text))] if text else []
        for index in sorted(calls):
            entry = calls[index]
            content.append(ToolUseBlock(id=entry["id"], name=entry["name"], input=parse_arguments(entry)))
        yield ModelTurn(
            content=content,
            stop_reason=STOP_REASONS.get(finish, finish),
            usage=usage,
            model=model,
            finish_reason=finish,
        )


def to_openai_messages(request: ModelRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
        if message.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": text or None}
            uses = [b for b in message.content if isinstance(b, ToolUseBlock)]
            if uses:
                entry["tool_calls"] = [
                    {
                        "id": use.id,
                        "type": "function",
                        "function": {"name": use.name, "arguments": msgspec.json.encode(use.input).decode()},
                    }
                    for use in uses
                ]
            messages.append(entry)
            continue
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                messages.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": block.content})
        if text:
            messages.append({"role": "user", "content": text})
    return messages


def parse_arguments(entry: dict[str, str]) -> dict[str, Any]:
    """A tool call's JSON arguments; a model that sent invalid JSON gets it back as the tool's error."""
    raw = entry["arguments"] or "{}"
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {"_invalid_arguments": raw}
    return value if isinstance(value, dict) else {"_invalid_arguments": raw}


def to_usage(usage: Any) -> TokenUsage:
    details = getattr(usage, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", None) or 0) if details is not None else 0
    return TokenUsage(
        input_tokens=(usage.prompt_tokens or 0) - cached,
        output_tokens=usage.completion_tokens or 0,
        cache_read_tokens=cached,
    )


def to_turn(completion: Any) -> ModelTurn:
    choice = completion.choices[0]
    message = choice.message
    content: list[Block] = [TextBlock(text=message.content)] if message.content else []
    for call in message.tool_calls or []:
        entry = {"arguments": call.function.arguments}
        content.append(ToolUseBlock(id=call.id, name=call.function.name, input=parse_arguments(entry)))
    finish = choice.finish_reason or "stop"
    return ModelTurn(
        content=content,
        stop_reason=STOP_REASONS.get(finish, finish),
        usage=to_usage(completion.usage) if completion.usage else TokenUsage(),
        model=completion.model,
        finish_reason=finish,
    )
