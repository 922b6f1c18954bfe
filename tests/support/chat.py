"""Fixtures for the chat function's tests: fake LLM servers and a served chat function."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from common.settings import Settings
from functions.chat.app import create
from functions.chat.providers.base import ModelRequest, ModelTurn, Provider, TextDelta
from functions.chat.settings import DEFAULT_PRICES, ChatSettings
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import running

TEST_KEY = "sk-ant-test-key-123"


def chat_settings(**overrides: Any) -> ChatSettings:
    """Chat settings for tests: small, fast retries and timeouts."""
    values: dict[str, Any] = {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "timeout": 10.0,
        "max_retries": 3,
        "retry_max_wait": 0.05,
        "prices": dict(DEFAULT_PRICES),
        "max_tool_rounds": 4,
        "tools_top_k": 5,
        "wait_timeout": 30.0,
    }
    values.update(overrides)
    return ChatSettings(**values)


async def completed(llm: Provider, request: ModelRequest) -> ModelTurn:
    """One `complete` call of a provider made for it; the provider is closed after, whatever happens."""
    try:
        return await llm.complete(request)
    finally:
        await llm.close()


async def streamed(llm: Provider, request: ModelRequest) -> list[TextDelta | ModelTurn]:
    """Everything one `stream` call yields; the provider is closed after, whatever happens."""
    try:
        return [item async for item in llm.stream(request)]
    finally:
        await llm.close()


@contextlib.asynccontextmanager
async def fake_anthropic() -> AsyncIterator[tuple[FakeAnthropic, str]]:
    server = FakeAnthropic()
    async with running(server) as url:
        yield server, url


@contextlib.asynccontextmanager
async def fake_openai() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    server = FakeOpenAI()
    async with running(server) as url:
        yield server, url


def anthropic_env(llm_url: str, **env: str) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": TEST_KEY, "ANTHROPIC_BASE_URL": llm_url, **env}


@contextlib.asynccontextmanager
async def chat_function(
    make_settings: Callable[..., Settings], chat: ChatSettings, **env: str
) -> AsyncIterator[tuple[str, Settings]]:
    """The chat app served on a free port with these settings; yields its URL and settings."""
    settings = make_settings(**env)
    async with running(create(settings, chat)) as url:
        yield url, settings


def tool_schema(name: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"], "title": name}


def sse_events(body: str) -> list[tuple[str, Any]]:
    """(event, decoded data) pairs of a Server-Sent Events body."""
    found = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            found.append((name, msgspec.json.decode("\n".join(data))))
    return found
