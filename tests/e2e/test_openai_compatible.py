"""The OpenAI-compatible routes, driven by the official `openai` client through the broker.

Broker, chat and tools are real and talk over real HTTP (the knative/base
Triggers); the LLM is the fake Anthropic server. The question "What does
NOTES.md say?" makes the model call `read_file`; the tools function reads the
file from a real workspace; the model answers. The run is made plain and
streamed, then continued through `conversation_id`, with the API key sent as
the client's Bearer token.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from common.settings import Settings
from eventing.broker.app import create as create_broker
from eventing.broker.settings import load_broker_settings
from eventing.dev.embedded import free_port
from functions.chat.app import create as create_chat
from functions.tools.app import create as create_tools
from functions.tools.settings import ToolsSettings
from tests.support.broker import Subscriber
from tests.support.chat import anthropic_env, chat_settings, fake_anthropic
from tests.support.fake_anthropic import FakeAnthropic, Reply, text, tool_use
from tests.support.servers import running

ROOT = Path(__file__).parents[2]
API_KEY = "victor-test-key-openai"
QUESTION = "What does NOTES.md say?"
NOTES = "Deploy on Fridays only after the smoke test passes.\n"
ANSWER = "NOTES.md says to deploy on Fridays only after the smoke test passes."
CHAT = chat_settings(tools_top_k=3)


def script_read(llm: FakeAnthropic) -> None:
    llm.push(
        Reply(
            [text("Reading it."), tool_use("toolu_notes", "read_file", {"path": "NOTES.md"})],
            input_tokens=700,
            output_tokens=30,
        ),
        Reply([text(ANSWER)], input_tokens=800, output_tokens=20, cache_read_input_tokens=100),
    )


@contextlib.asynccontextmanager
async def system(
    make_settings: Callable[..., Settings], llm_url: str, dead_letters: Subscriber
) -> AsyncIterator[str]:
    """Broker, chat (behind an API key) and tools; yields chat's URL."""
    ports = {name: free_port() for name in ("broker", "chat", "tools", "dead_letters")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        "VICTOR_CHAT_URL": urls["chat"],
        "VICTOR_TOOLS_URL": urls["tools"],
        "VICTOR_BROKER_URL": f"{urls['broker']}/victor/default",
        # No embeddings: keyword ranking, which scores this question 0 for every tool.
        "VICTOR_EMBEDDING_MODEL": "/nonexistent/model",
        **anthropic_env(llm_url),
    }
    settings = make_settings(**env)
    (settings.workspace_dir / "NOTES.md").write_text(NOTES)
    chat_only = make_settings(**env, VICTOR_API_KEY=API_KEY)
    broker_config = load_broker_settings(
        settings,
        {
            "VICTOR_TRIGGERS_PATH": str(ROOT / "knative" / "base"),
            "VICTOR_BROKER_STREAM": f"victor:openai-e2e:{uuid.uuid4().hex}",
            # Dead letters, health and embeddings (not under test) go to a recorder that must stay empty.
            "VICTOR_SUBSCRIBER_URLS": ",".join(
                f"victor-{name}={urls['dead_letters']}" for name in ("dead-letters", "health", "embeddings")
            ),
        },
    )
    async with (
        running(dead_letters, port=ports["dead_letters"]),
        running(create_tools(settings, ToolsSettings()), port=ports["tools"]),
        running(create_chat(chat_only, CHAT), port=ports["chat"]),
        running(create_broker(settings, broker_config), port=ports["broker"]),
    ):
        yield urls["chat"]


def client(url: str, key: str = API_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def assert_file_was_read(llm: FakeAnthropic, call: int) -> None:
    offered = [tool["name"] for tool in llm.requests[call].body["tools"]]
    assert "read_file" in offered and len(offered) == 11  # a catalog this small is sent whole
    results = llm.requests[call + 1].body["messages"][-1]["content"]
    assert [(r["tool_use_id"], r["is_error"]) for r in results] == [("toolu_notes", False)]
    assert NOTES.strip() in results[0]["content"]


async def test_openai_client_plain_and_streamed_through_the_broker(make_settings) -> None:
    dead_letters = Subscriber()
    async with (
        fake_anthropic() as (llm, llm_url),
        system(make_settings, llm_url, dead_letters) as url,
        client(url) as victor,
    ):
        models = await victor.models.list()
        assert [model.id for model in models.data] == ["victor"]

        # Plain: one chat.completion after the tool loop read the file.
        script_read(llm)
        completion = await victor.chat.completions.create(
            model="victor", messages=[{"role": "user", "content": QUESTION}]
        )
        assert completion.object == "chat.completion"
        assert completion.model == "victor"
        assert completion.choices[0].message.content == ANSWER
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1600, 50)
        assert completion.usage.total_tokens == 1650
        assert_file_was_read(llm, 0)
        conversation = (completion.model_extra or {})["conversation_id"]

        # Streamed: text deltas, the tool activity as reasoning, usage in the final chunk.
        script_read(llm)
        stream = await victor.chat.completions.create(
            model="victor",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}],
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
        assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reasoning = "".join(
            (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices
        )
        assert content == "Reading it." + ANSWER
        assert reasoning.startswith('→ read_file({"path": "NOTES.md"})\n← read_file ok (')
        assert NOTES.strip() in reasoning
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 1650
        assert all(c.usage is None for c in chunks[:-1])
        assert llm.requests[2].body["stream"] is True
        assert llm.requests[2].body["system"] == "Be brief." or llm.requests[2].body["system"][0]["text"] == (
            "Be brief."
        )
        assert_file_was_read(llm, 2)

        # Continued: the stored conversation is what the model sees, plus the new turn.
        llm.push(Reply([text("Fridays.")], input_tokens=900, output_tokens=3))
        follow_up = await victor.chat.completions.create(
            model="victor",
            messages=[{"role": "user", "content": "When again?"}],
            extra_body={"conversation_id": conversation},
        )
        assert follow_up.choices[0].message.content == "Fridays."
        sent = llm.requests[4].body["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
        assert sent[-1]["content"] == [{"type": "text", "text": "When again?"}]
        assert (follow_up.model_extra or {})["conversation_id"] == conversation
    assert dead_letters.received == []


async def test_openai_errors_come_in_openais_envelope(make_settings) -> None:
    dead_letters = Subscriber()
    async with fake_anthropic() as (_, llm_url), system(make_settings, llm_url, dead_letters) as url:
        async with client(url, key="wrong-key") as intruder:
            with pytest.raises(openai.AuthenticationError) as denied:
                await intruder.models.list()
        async with client(url) as victor:
            with pytest.raises(openai.NotFoundError) as unknown_model:
                await victor.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
                )
            with pytest.raises(openai.NotFoundError) as unknown_conversation:
                await victor.chat.completions.create(
                    model="victor",
                    messages=[{"role": "user", "content": "hi"}],
                    extra_headers={"X-Conversation-Id": "no-such-conversation"},
                )
            with pytest.raises(openai.UnprocessableEntityError) as no_question:
                await victor.chat.completions.create(
                    model="victor", messages=[{"role": "assistant", "content": "hello"}]
                )
    body: Any = denied.value.body
    assert (denied.value.status_code, body["type"], body["code"]) == (
        401,
        "authentication_error",
        "unauthorized",
    )
    assert unknown_model.value.code == "model_not_found"
    assert unknown_model.value.body["message"] == "the model 'gpt-4o' does not exist; use 'victor'"
    assert unknown_conversation.value.code == "not_found"
    assert no_question.value.code == "invalid_request"
    assert no_question.value.type == "invalid_request_error"
