"""The LLM call's span carries the OpenTelemetry GenAI attributes, whichever provider answers."""

# ruff: noqa: F811 - pytest fixtures imported from tests.support

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.chat import anthropic_env, chat_function, chat_settings, fake_anthropic, fake_openai
from tests.support.fake_anthropic import Reply, text
from tests.support.fake_llm import Failure
from tests.support.fake_openai import Completion
from tests.support.otlp import recorded_spans  # noqa: F401 - the fixture


def llm_spans(exporter: InMemorySpanExporter, model: str) -> list[Any]:
    return [span for span in exporter.get_finished_spans() if span.name == f"chat {model}"]


async def test_an_openai_compatible_call_has_genai_attributes(make_settings, recorded_spans) -> None:
    async with fake_openai() as (server, url):
        server.push(Completion(text="Hi.", prompt_tokens=8, completion_tokens=6, cached_tokens=3))
        chat = chat_settings(provider="openai", model="llama3.1", temperature=0.2)
        async with (
            chat_function(make_settings, chat, OPENAI_BASE_URL=f"{url}/v1") as (chat_url, _),
            httpx.AsyncClient(base_url=chat_url, timeout=30) as client,
        ):
            assert (await client.post("/v1/chat", json={"message": "hi"})).status_code == 200
    [span] = llm_spans(recorded_spans, "llama3.1")
    assert span.kind == SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "llama3.1",
        "gen_ai.request.max_tokens": 1024,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": "llama3.1",
        "gen_ai.response.finish_reasons": ("stop",),  # OpenAI's word, not the neutral end_turn
        "gen_ai.usage.input_tokens": 8,
        "gen_ai.usage.output_tokens": 6,
        "gen_ai.usage.cache_read.input_tokens": 3,
        "gen_ai.usage.cache_creation.input_tokens": 0,
    }


async def test_a_failed_anthropic_call_is_an_error_span_naming_the_failure(
    make_settings, recorded_spans
) -> None:
    async with fake_anthropic() as (server, url):
        server.push(Failure(400, "messages: at least one message is required"), Reply([text("never")]))
        chat = chat_settings()
        async with (
            chat_function(make_settings, chat, **anthropic_env(url)) as (chat_url, _),
            httpx.AsyncClient(base_url=chat_url, timeout=30) as client,
        ):
            answered = await client.post("/v1/chat", json={"message": "hi"})
    assert answered.status_code == 502, answered.text
    [span] = llm_spans(recorded_spans, "claude-sonnet-4-5")
    assert span.status.status_code == StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert (attributes["gen_ai.provider.name"], attributes["error.type"]) == (
        "anthropic",
        "provider_rejected",
    )
    assert "gen_ai.usage.input_tokens" not in attributes
