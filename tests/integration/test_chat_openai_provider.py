"""The OpenAI-compatible provider with the real openai SDK against a local chat-completions server."""

from __future__ import annotations

import httpx
import pytest

from common.settings import load_settings
from functions.chat.providers.base import (
    Message,
    ModelRequest,
    ProviderError,
    TextBlock,
    TextDelta,
    TokenUsage,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)
from functions.chat.providers.openai_compat import OpenAICompatProvider
from tests.support.chat import chat_function, chat_settings, completed, fake_openai, streamed, tool_schema
from tests.support.fake_anthropic import Failure
from tests.support.fake_openai import Completion

HISTORY = [
    Message(role="user", content=[TextBlock(text="Read README.md")]),
    Message(
        role="assistant",
        content=[
            TextBlock(text="Reading."),
            ToolUseBlock(id="call_1", name="read_file", input={"path": "README.md"}),
        ],
    ),
    Message(role="user", content=[ToolResultBlock(tool_use_id="call_1", content="# Victor", is_error=False)]),
]


def request() -> ModelRequest:
    return ModelRequest(
        model="gpt-4o-mini",
        max_tokens=100,
        system="Be brief.",
        messages=HISTORY,
        tools=[ToolSpec(name="grep", description="Search", input_schema=tool_schema("grep"))],
    )


def provider(url: str, **overrides: object) -> OpenAICompatProvider:
    settings = load_settings({"OPENAI_API_KEY": "sk-openai-test", "OPENAI_BASE_URL": f"{url}/v1"})
    return OpenAICompatProvider(settings, chat_settings(provider="openai", **overrides))


async def test_complete_translates_history_and_tools_and_reads_tool_calls_and_usage() -> None:
    async with fake_openai() as (server, url):
        server.push(
            Completion(
                text=None,
                tool_calls=[{"id": "call_2", "name": "grep", "arguments": {"pattern": "Victor"}}],
                prompt_tokens=500,
                completion_tokens=12,
                cached_tokens=384,
            )
        )
        turn = await completed(provider(url), request())
    assert turn.content == [ToolUseBlock(id="call_2", name="grep", input={"pattern": "Victor"})]
    assert turn.stop_reason == "tool_use"
    assert turn.usage == TokenUsage(input_tokens=116, output_tokens=12, cache_read_tokens=384)
    [sent] = server.requests
    assert sent.headers["authorization"] == "Bearer sk-openai-test"
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Read README.md"},
        {
            "role": "assistant",
            "content": "Reading.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path":"README.md"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "# Victor"},
    ]
    assert sent.body["tools"] == [
        {
            "type": "function",
            "function": {"name": "grep", "description": "Search", "parameters": tool_schema("grep")},
        }
    ]


async def test_stream_yields_text_and_assembles_tool_arguments_from_partial_chunks() -> None:
    async with fake_openai() as (server, url):
        server.push(
            Completion(
                text="Looking for it.",
                tool_calls=[
                    {"id": "call_7", "name": "grep", "arguments": {"pattern": "def main", "path": "src"}}
                ],
                prompt_tokens=40,
                completion_tokens=9,
                chunk=5,
            )
        )
        items = await streamed(provider(url), request())
    assert [i.text for i in items if isinstance(i, TextDelta)] == ["Looki", "ng fo", "r it."]
    final = items[-1]
    assert not isinstance(final, TextDelta)
    assert final.content == [
        TextBlock(text="Looking for it."),
        ToolUseBlock(id="call_7", name="grep", input={"pattern": "def main", "path": "src"}),
    ]
    assert final.usage == TokenUsage(input_tokens=40, output_tokens=9)
    assert server.requests[0].body["stream_options"] == {"include_usage": True}


async def test_429_and_500_are_retried_and_400_is_not() -> None:
    async with fake_openai() as (server, url):
        server.push(
            Failure(429, "Rate limit", retry_after="0"),
            Failure(500, "oops", retry_after="0"),
            Completion(text="ok"),
        )
        server.push(Failure(400, "Invalid 'messages'"), Completion(text="never"))
        llm = provider(url)
        assert (await llm.complete(request())).text == "ok"
        with pytest.raises(ProviderError) as caught:
            await llm.complete(request())
        await llm.close()
    assert len(server.requests) == 4
    assert (caught.value.status, caught.value.code) == (400, "provider_rejected")
    assert caught.value.message == "the OpenAI-compatible server answered 400: Invalid 'messages'"


async def test_chat_function_runs_on_an_openai_compatible_server_without_an_api_key(make_settings) -> None:
    async with fake_openai() as (server, url):
        server.push(Completion(text="Hi from a local model.", prompt_tokens=8, completion_tokens=6))
        chat = chat_settings(provider="openai", model="llama3.1")
        async with (
            chat_function(make_settings, chat, OPENAI_BASE_URL=f"{url}/v1") as (chat_url, _),
            httpx.AsyncClient(base_url=chat_url, timeout=30) as client,
        ):
            body = (await client.post("/v1/chat", json={"message": "hi"})).json()
    assert body["answer"] == "Hi from a local model."
    assert (body["provider"], body["model"]) == ("openai", "llama3.1")
    assert body["usage"] == {
        "input_tokens": 8,
        "output_tokens": 6,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": 0.0,
    }
    assert server.requests[0].headers["authorization"] == "Bearer unused"
