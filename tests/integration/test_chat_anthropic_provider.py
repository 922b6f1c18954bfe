"""The Anthropic provider with the real SDK against a local server speaking the Messages API."""

from __future__ import annotations

import pytest

from common.settings import load_settings
from functions.chat.providers.anthropic import AnthropicProvider
from functions.chat.providers.base import (
    Message,
    ModelRequest,
    ProviderError,
    TextBlock,
    TextDelta,
    TokenUsage,
    ToolSpec,
    ToolUseBlock,
)
from tests.support.chat import TEST_KEY, chat_settings, completed, fake_anthropic, streamed, tool_schema
from tests.support.fake_anthropic import Failure, Reply, text, tool_use

TOOLS = [
    ToolSpec(name="read_file", description="Read a file", input_schema=tool_schema("read_file")),
    ToolSpec(name="grep", description="Search files", input_schema=tool_schema("grep")),
]


def request(**overrides: object) -> ModelRequest:
    values: dict[str, object] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": "You are Victor.",
        "messages": [Message(role="user", content=[TextBlock(text="What is in README.md?")])],
        "tools": TOOLS,
    }
    values.update(overrides)
    return ModelRequest(**values)  # type: ignore[arg-type]


def provider(url: str, **overrides: object) -> AnthropicProvider:
    settings = load_settings({"ANTHROPIC_API_KEY": TEST_KEY, "ANTHROPIC_BASE_URL": url})
    return AnthropicProvider(settings, chat_settings(**overrides))


async def test_complete_returns_text_tool_use_and_usage_and_sends_cache_breakpoints() -> None:
    async with fake_anthropic() as (server, url):
        server.push(
            Reply(
                [text("Let me look."), tool_use("toolu_1", "read_file", {"path": "README.md"})],
                input_tokens=120,
                output_tokens=30,
                cache_read_input_tokens=2000,
                cache_creation_input_tokens=500,
            )
        )
        turn = await completed(provider(url), request())
    assert turn.content == [
        TextBlock(text="Let me look."),
        ToolUseBlock(id="toolu_1", name="read_file", input={"path": "README.md"}),
    ]
    assert turn.stop_reason == "tool_use"
    assert turn.usage == TokenUsage(
        input_tokens=120, output_tokens=30, cache_read_tokens=2000, cache_write_tokens=500
    )
    [sent] = server.requests
    # The SDK authenticates with x-api-key or a bearer token depending on its version.
    assert TEST_KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    assert sent.headers["anthropic-version"]
    assert sent.headers["x-stainless-retry-count"] == "0"
    assert sent.body["system"] == [
        {"type": "text", "text": "You are Victor.", "cache_control": {"type": "ephemeral"}}
    ]
    assert [t.get("cache_control") for t in sent.body["tools"]] == [None, {"type": "ephemeral"}]
    assert sent.body["tools"][0]["input_schema"] == tool_schema("read_file")
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What is in README.md?"}]}
    ]
    assert sent.body["max_tokens"] == 256
    assert "stream" not in sent.body


async def test_stream_yields_text_deltas_and_assembles_tool_input_from_partial_json() -> None:
    arguments = {"pattern": "def main", "path": "src", "flags": ["-n", "-i"]}
    async with fake_anthropic() as (server, url):
        server.push(
            Reply(
                [text("Searching the code base now."), tool_use("toolu_9", "grep", arguments)],
                input_tokens=7,
                output_tokens=44,
                cache_read_input_tokens=3,
                chunk=4,
            )
        )
        items = await streamed(provider(url), request())
    deltas = [item.text for item in items if isinstance(item, TextDelta)]
    assert deltas == ["Sear", "chin", "g th", "e co", "de b", "ase ", "now."]
    final = items[-1]
    assert not isinstance(final, TextDelta)
    assert final.content == [
        TextBlock(text="Searching the code base now."),
        ToolUseBlock(id="toolu_9", name="grep", input=arguments),
    ]
    assert final.usage == TokenUsage(input_tokens=7, output_tokens=44, cache_read_tokens=3)
    assert server.requests[0].body["stream"] is True


@pytest.mark.parametrize("status", [429, 529, 500, 503])
async def test_retryable_status_is_retried_until_success(status: int) -> None:
    async with fake_anthropic() as (server, url):
        server.push(
            Failure(status, "busy", retry_after="0"),
            Failure(status, "busy", retry_after="0"),
            Reply([text("ok")]),
        )
        turn = await completed(provider(url), request())
    assert turn.text == "ok"
    assert len(server.requests) == 3


async def test_retry_waits_as_long_as_retry_after_says() -> None:
    waits: list[float] = []
    async with fake_anthropic() as (server, url):
        server.push(
            Failure(429, "slow down", retry_after="0.04"),
            Failure(529, "overloaded", retry_after="7"),
            Reply([text("ok")]),
        )
        llm = provider(url, retry_max_wait=0.05)
        llm.on_retry = lambda error, wait: waits.append(wait)
        await completed(llm, request())
    # retry-after is honoured, capped at VICTOR_LLM_RETRY_MAX_WAIT.
    assert waits == [0.04, 0.05]


async def test_exhausted_retries_raise_the_providers_error() -> None:
    async with fake_anthropic() as (server, url):
        server.push(*[Failure(529, "Overloaded", retry_after="0")] * 3)
        with pytest.raises(ProviderError) as caught:
            await completed(provider(url, max_retries=2), request())
    assert len(server.requests) == 3
    assert caught.value.status == 529
    assert caught.value.code == "provider_error"
    assert caught.value.message == "Anthropic answered 529: overloaded_error: Overloaded"


async def test_400_is_reported_and_not_retried() -> None:
    async with fake_anthropic() as (server, url):
        server.push(Failure(400, "max_tokens: must be positive"), Reply([text("never sent")]))
        with pytest.raises(ProviderError) as caught:
            await completed(provider(url), request())
    assert len(server.requests) == 1
    assert (caught.value.status, caught.value.retryable, caught.value.code) == (
        400,
        False,
        "provider_rejected",
    )
    assert (
        caught.value.message == "Anthropic answered 400: invalid_request_error: max_tokens: must be positive"
    )


async def test_stream_failure_before_any_text_is_retried() -> None:
    async with fake_anthropic() as (server, url):
        server.push(Failure(529, "Overloaded", retry_after="0"), Reply([text("streamed")]))
        items = await streamed(provider(url), request())
    assert [i.text for i in items if isinstance(i, TextDelta)] == ["streame", "d"]
    assert len(server.requests) == 2


async def test_slow_provider_fails_with_timeout_after_the_timeout_setting() -> None:
    async with fake_anthropic() as (server, url):
        server.push(Reply([text("too late")], delay=2.0))
        with pytest.raises(ProviderError) as caught:
            await completed(provider(url, timeout=0.2), request())
    assert (caught.value.status, caught.value.code) == (408, "provider_timeout")
    assert len(server.requests) == 1
