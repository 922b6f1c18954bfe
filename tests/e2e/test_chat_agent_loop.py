"""The agent loop end to end: broker, chat, tools and embeddings functions, all real, over real HTTP.

The broker serves the real knative/base Triggers (chat.requested and
tools.completed to chat, tools.requested to tools). The LLM is the fake
Anthropic server, driven by the real SDK. In one turn the model asks for
`read_file` and `grep`; the tools function runs both (one batch) on a real
git workspace; the results go back to the model, which answers. The run is
made three ways: an event published to the broker, POST /v1/chat, and
POST /v1/chat with `stream: true`. Each time the stored conversation, the
tool results and the usage must match what the model and tools produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from common.cloudevents import new_event
from common.settings import Settings
from eventing.broker.app import create as create_broker
from eventing.broker.settings import load_broker_settings
from eventing.client import publish
from eventing.dev.embedded import free_port
from eventing.schemas.chat import CHAT_REQUESTED
from functions.chat.app import create as create_chat
from functions.tools.app import create as create_tools
from functions.tools.settings import ToolsSettings
from tests.support.broker import Subscriber
from tests.support.chat import anthropic_env, chat_settings, fake_anthropic, sse_events
from tests.support.embeddings import (  # noqa: F401 - fixtures
    embedding_settings,
    embeddings_app,
    minilm,
    wait_started,
)
from tests.support.fake_anthropic import FakeAnthropic, Reply, text, tool_use
from tests.support.servers import running
from tests.support.tools import make_repository

ROOT = Path(__file__).parents[2]
QUESTION = "Read the file README.md and grep for def greet in src: what does the project do?"
ANSWER = "It is a tiny demo project; greet(name) is defined in src/app.py."
# Threshold 0: this test checks the selection's cut to k, which an 11-tool catalog is otherwise spared.
CHAT = chat_settings(tools_top_k=8, tools_prune_threshold=0)


def script_one_run(llm: FakeAnthropic) -> None:
    llm.push(
        Reply(
            [
                text("I will read the README and search the code."),
                tool_use("toolu_read", "read_file", {"path": "README.md"}),
                tool_use("toolu_grep", "grep", {"pattern": "def greet", "path": "src"}),
            ],
            input_tokens=900,
            output_tokens=60,
            cache_creation_input_tokens=1500,
        ),
        Reply([text(ANSWER)], input_tokens=1100, output_tokens=25, cache_read_input_tokens=1500),
    )


EXPECTED_USAGE = {
    "input_tokens": 2000,
    "output_tokens": 85,
    "cache_read_tokens": 1500,
    "cache_write_tokens": 1500,
}
EXPECTED_COST = CHAT.cost("claude-sonnet-4-5", 900, 60, 0, 1500) + CHAT.cost(
    "claude-sonnet-4-5", 1100, 25, 1500, 0
)


@contextlib.asynccontextmanager
async def system(
    build_embeddings: Callable[..., tuple[Litestar, Settings]], llm_url: str, dead_letters: Subscriber
) -> AsyncIterator[tuple[dict[str, str], Settings]]:
    """Broker, chat, tools and embeddings on ports fixed up front (each one knows the others' URLs)."""
    ports = {name: free_port() for name in ("broker", "chat", "tools", "embeddings", "dead_letters")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        "VICTOR_CHAT_URL": urls["chat"],
        "VICTOR_TOOLS_URL": urls["tools"],
        "VICTOR_EMBEDDINGS_URL": urls["embeddings"],
        "VICTOR_BROKER_URL": f"{urls['broker']}/victor/default",
        **anthropic_env(llm_url),
    }
    embeddings, settings = build_embeddings(**env)
    make_repository(settings.workspace_dir)
    broker_config = load_broker_settings(
        settings,
        {
            "VICTOR_TRIGGERS_PATH": str(ROOT / "knative" / "base"),
            "VICTOR_BROKER_STREAM": f"victor:chat-e2e:{uuid.uuid4().hex}",
            # Dead letters and health (not under test) go to a recorder that must stay empty.
            "VICTOR_SUBSCRIBER_URLS": ",".join(
                f"victor-{name}={urls['dead_letters']}" for name in ("dead-letters", "health")
            ),
        },
    )
    async with (
        running(dead_letters, port=ports["dead_letters"]),
        running(embeddings, port=ports["embeddings"]),
        running(create_tools(settings, ToolsSettings()), port=ports["tools"]),
        running(create_chat(settings, CHAT), port=ports["chat"]),
        running(create_broker(settings, broker_config), port=ports["broker"]),
        httpx.AsyncClient(base_url=urls["embeddings"], timeout=30) as client,
    ):
        await wait_started(client)
        yield urls, settings


def assert_second_call_got_both_results(llm: FakeAnthropic, call: int) -> None:
    first, second = llm.requests[call].body, llm.requests[call + 1].body
    offered = [tool["name"] for tool in first["tools"]]
    assert {"read_file", "grep"} <= set(offered) and len(offered) <= 8
    assert first["messages"] == [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    results = second["messages"][-1]
    assert results["role"] == "user"
    assert [block["tool_use_id"] for block in results["content"]] == ["toolu_read", "toolu_grep"]
    read, grep = results["content"]
    assert read["is_error"] is False and "A tiny project for the tools tests." in read["content"]
    assert grep["is_error"] is False and "src/app.py" in grep["content"] and "def greet" in grep["content"]
    assert second["tools"] == first["tools"]


def assert_stored(view: dict[str, Any], answer: dict[str, Any]) -> None:
    assert [m["role"] for m in view["messages"]] == ["user", "assistant", "user", "assistant"]
    assert view["messages"][3]["content"] == [{"type": "text", "text": ANSWER}]
    assert [(c["id"], c["name"], c["is_error"]) for c in view["tool_calls"]] == [
        ("toolu_read", "read_file", False),
        ("toolu_grep", "grep", False),
    ]
    assert [(c["turn"], c["input_tokens"], c["output_tokens"]) for c in view["llm_calls"]] == [
        (0, 900, 60),
        (1, 1100, 25),
    ]
    assert sum(Decimal(str(c["cost_usd"])) for c in view["llm_calls"]) == EXPECTED_COST
    assert answer["answer"] == ANSWER
    assert answer["llm_calls"] == 2
    assert [c["name"] for c in answer["tool_calls"]] == ["read_file", "grep"]
    assert {k: answer["usage"][k] for k in EXPECTED_USAGE} == EXPECTED_USAGE
    assert answer["usage"]["cost_usd"] == pytest.approx(float(EXPECTED_COST), abs=1e-12)


async def wait_completed(client: httpx.AsyncClient, conversation_id: str) -> dict[str, Any]:
    for _ in range(600):  # at most 60 s
        response = await client.get(f"/v1/conversations/{conversation_id}")
        if response.status_code == 200 and response.json()["requests"][0]["status"] != "running":
            return dict(response.json())
        await asyncio.sleep(0.1)
    raise AssertionError(f"conversation {conversation_id} did not finish")


async def test_agent_loop_through_the_broker_with_real_chat_tools_and_embeddings(
    embeddings_app,  # noqa: F811 - the fixture
) -> None:
    dead_letters = Subscriber()
    async with (
        fake_anthropic() as (llm, llm_url),
        system(embeddings_app, llm_url, dead_letters) as (urls, _),
        httpx.AsyncClient(base_url=urls["chat"], timeout=60) as chat,
    ):
        # 1. An event published to the broker.
        script_one_run(llm)
        conversation = f"e2e-event-{uuid.uuid4()}"
        event = new_event(CHAT_REQUESTED, "/test/e2e", {"message": QUESTION, "conversation_id": conversation})
        async with httpx.AsyncClient() as http:
            await publish(http, f"{urls['broker']}/victor/default", event)
        view = await wait_completed(chat, conversation)
        assert view["requests"][0]["status"] == "completed"
        assert len(llm.requests) == 2
        assert_second_call_got_both_results(llm, 0)
        assert_stored(view, view_answer(view))

        # 2. POST /v1/chat, waiting for the answer.
        script_one_run(llm)
        response = await chat.post("/v1/chat", json={"message": QUESTION})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert len(llm.requests) == 4
        assert_second_call_got_both_results(llm, 2)
        assert_stored((await chat.get(f"/v1/conversations/{answer['conversation_id']}")).json(), answer)

        # 3. POST /v1/chat streaming: text deltas, both tool calls and results, then done.
        script_one_run(llm)
        streamed = await chat.post("/v1/chat", json={"message": QUESTION, "stream": True})
        assert streamed.status_code == 200
        events = sse_events(streamed.text)
        kinds = [name for name, _ in events]
        assert kinds[-1] == "done"
        assert [d["name"] for n, d in events if n == "tool_call"] == ["read_file", "grep"]
        assert [d["name"] for n, d in events if n == "tool_result"] == ["read_file", "grep"]
        assert kinds.index("tool_result") > kinds.index("tool_call")
        text_deltas = "".join(d["text"] for n, d in events if n == "text")
        assert text_deltas == "I will read the README and search the code." + ANSWER
        done = events[-1][1]
        assert len(llm.requests) == 6
        assert llm.requests[4].body["stream"] is True
        assert_second_call_got_both_results(llm, 4)
        assert_stored((await chat.get(f"/v1/conversations/{done['conversation_id']}")).json(), done)
    # Nothing failed delivery on the way (chat.completed has no Trigger and is dropped, as in Knative).
    assert dead_letters.received == []


def view_answer(view: dict[str, Any]) -> dict[str, Any]:
    """The answer of a conversation's only request, in the shape POST /v1/chat returns."""
    request = view["requests"][0]
    return {
        "answer": request["answer"],
        "llm_calls": len(view["llm_calls"]),
        "tool_calls": view["tool_calls"],
        "usage": view["usage"],
    }
