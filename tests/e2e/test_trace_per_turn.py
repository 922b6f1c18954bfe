"""One trace per agent turn, across real processes: broker, chat, tools and embeddings.

Each runs as `victor serve NAME`, exporting its spans over OTLP/HTTP to a local receiver
(tests/support/otlp.py); the model is the fake Anthropic server, driven by the real SDK.
One POST /v1/chat, sent with a traceparent, goes chat → broker → chat (the model asks for
read_file) → broker → tools → broker → chat (the model answers); chat's tool selection asks
tools, which embeds the question through embeddings. Every span of the turn must be in the
caller's trace, each under the span that caused it, across the Redis stream and every process.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import httpx
import pytest

from eventing.dev.embedded import free_port
from functions.chat.settings import DEFAULT_MODELS
from tests.support.broker import Subscriber
from tests.support.chat import anthropic_env
from tests.support.embeddings import minilm_directory, wait_started
from tests.support.fake_anthropic import FakeAnthropic, Reply, text, tool_use
from tests.support.foundation import ROOT, clean_env, serving, victor_serve
from tests.support.otlp import OTLPReceiver, ReceivedSpan
from tests.support.servers import running

pytestmark = pytest.mark.slow

TRACE_ID = uuid.uuid4().hex
CALLER_SPAN = "00f067aa0ba902b7"
ANSWER = "The project is a tiny demo."
MODEL = DEFAULT_MODELS["anthropic"]  # the turn names no model: chat uses its default
INGRESS = "POST /{namespace}/{broker}"
# (service, span name) of every span the turn must produce.
EXPECTED = {
    ("victor-chat", "POST /v1/chat"),
    ("victor-chat", "POST /"),
    ("victor-chat", "chat ai.victor.chat.requested"),
    ("victor-chat", "chat ai.victor.tools.completed"),
    ("victor-chat", f"chat {MODEL}"),
    ("victor-broker", INGRESS),
    ("victor-broker", "deliver victor-chat-requested"),
    ("victor-broker", "reply ai.victor.tools.requested"),
    ("victor-broker", "deliver victor-tools-requested"),
    ("victor-broker", "reply ai.victor.tools.completed"),
    ("victor-broker", "deliver victor-tools-completed"),
    ("victor-tools", "POST /v1/tools/select"),
    ("victor-tools", "POST /"),
    ("victor-tools", "tools ai.victor.tools.requested"),
    ("victor-tools", "execute_tool read_file"),
    ("victor-embeddings", "POST /v1/embeddings"),
    ("victor-embeddings", "embeddings batch"),
    ("victor-chat", "GET /v1/conversations/{conversation_id}"),
}


class Trace:
    """The received spans of one trace, to walk by parentage."""

    def __init__(self, spans: list[ReceivedSpan]) -> None:
        self.spans = [span for span in spans if span.trace_id == TRACE_ID]
        self.by_id = {span.span_id: span for span in self.spans}

    def named(self, service: str, name: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if (span.service, span.name) == (service, name)]

    def one(self, service: str, name: str) -> ReceivedSpan:
        found = self.named(service, name)
        assert len(found) == 1, f"{service}: {name}: {len(found)} spans"
        return found[0]

    def children(self, parent: ReceivedSpan, service: str, name: str) -> list[ReceivedSpan]:
        return [span for span in self.named(service, name) if span.parent_id == parent.span_id]

    def child(self, parent: ReceivedSpan, service: str, name: str) -> ReceivedSpan:
        found = self.children(parent, service, name)
        assert len(found) == 1, f"{service}: {name} under {parent}: {len(found)} spans"
        return found[0]

    def ancestors(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        chain = []
        while span.parent_id in self.by_id:
            span = self.by_id[span.parent_id]
            chain.append(span)
        return chain

    def complete(self) -> bool:
        names = {(span.service, span.name) for span in self.spans}
        return names >= EXPECTED and len(self.named("victor-chat", f"chat {MODEL}")) == 2


async def test_one_agent_turn_is_one_trace_across_the_broker_and_every_function(
    services, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "README.md").write_text("A tiny demo project.\n")
    receiver, llm, dead_letters = OTLPReceiver(), FakeAnthropic(), Subscriber()
    ports = {name: free_port() for name in ("broker", "chat", "tools", "embeddings")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    async with running(receiver) as otlp_url, running(llm) as llm_url, running(dead_letters) as dead_url:
        env = clean_env(
            **services.env(),
            **anthropic_env(llm_url),
            WORKSPACE_DIR=str(workspace),
            LANCEDB_URI=str(tmp_path / "lancedb"),
            VICTOR_CHAT_URL=urls["chat"],
            VICTOR_TOOLS_URL=urls["tools"],
            VICTOR_EMBEDDINGS_URL=urls["embeddings"],
            VICTOR_BROKER_URL=f"{urls['broker']}/victor/default",
            VICTOR_TRIGGERS_PATH=str(ROOT / "knative" / "base"),
            VICTOR_BROKER_STREAM=f"victor:trace-e2e:{uuid.uuid4().hex}",
            VICTOR_SUBSCRIBER_URLS=f"victor-dead-letters={dead_url},victor-health={dead_url}",
            # Every catalog goes through selection, so tools embeds the question through embeddings.
            VICTOR_CHAT_TOOLS_PRUNE_THRESHOLD="0",
            VICTOR_EMBEDDING_MODEL=minilm_directory(),
            HF_HUB_OFFLINE="1",
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp_url,
            OTEL_BSP_SCHEDULE_DELAY="100",  # export every tenth of a second rather than every five
        )
        async with contextlib.AsyncExitStack() as stack:
            for name in ("embeddings", "tools", "chat", "broker"):
                await stack.enter_async_context(
                    serving(victor_serve(name), env, tmp_path / f"{name}.log", port=ports[name])
                )
            async with httpx.AsyncClient(base_url=urls["embeddings"], timeout=60) as http:
                await wait_started(http, attempts=2400)
            llm.push(
                Reply([text("Reading it."), tool_use("toolu_read", "read_file", {"path": "README.md"})]),
                Reply([text(ANSWER)], input_tokens=40, output_tokens=7, cache_read_input_tokens=100),
            )
            caller = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
            async with httpx.AsyncClient(base_url=urls["chat"], timeout=120) as chat:
                question = f"What does README.md say? ({uuid.uuid4()})"  # no cached selection or answer
                answered = await chat.post("/v1/chat", json={"message": question}, headers=caller)
                assert answered.status_code == 200, answered.text
                assert answered.json()["answer"] == ANSWER
                conversation = answered.json()["conversation_id"]
                viewed = await chat.get(f"/v1/conversations/{conversation}", headers=caller)
                assert viewed.status_code == 200
            await receiver.wait_for(lambda spans: Trace(spans).complete())
    assert dead_letters.received == []
    turn = Trace(receiver.spans)
    # Nothing else was traced: background work (stream reads, trims, start-up queries) makes no traces.
    assert {span.trace_id for span in receiver.spans} == {TRACE_ID}

    # chat takes the request and hands it to the broker (through its HTTP client span).
    request = turn.one("victor-chat", "POST /v1/chat")
    assert request.parent_id == CALLER_SPAN
    assert (request.kind, request.attributes["http.route"]) == ("server", "/v1/chat")
    assert request.attributes["http.response.status_code"] == 200
    ingress = turn.one("victor-broker", INGRESS)
    assert ingress.kind == "server" and ingress.attributes["http.response.status_code"] == 202
    assert turn.by_id[ingress.parent_id].service == "victor-chat"
    assert turn.by_id[ingress.parent_id].kind == "client"
    assert request in turn.ancestors(ingress)
    # The event is stored in Redis under the ingress span.
    assert any(
        span.attributes.get("db.system") == "redis" and ingress in turn.ancestors(span) for span in turn.spans
    )

    # The stream entry carried the ingress span's context to the delivery; chat handles it below.
    delivered = turn.child(ingress, "victor-broker", "deliver victor-chat-requested")
    assert delivered.kind == "consumer" and delivered.attributes["victor.delivery.outcome"] == "delivered"
    first_post = turn.child(delivered, "victor-chat", "POST /")
    first_step = turn.child(first_post, "victor-chat", "chat ai.victor.chat.requested")
    first_call = turn.child(first_step, "victor-chat", f"chat {MODEL}")
    assert first_call.kind == "client"
    assert {key: first_call.attributes[key] for key in GENAI_KEYS} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "gen_ai.response.finish_reasons": ["tool_use"],
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
    }
    # The SDK's HTTP request to the model is under the LLM call; PostgreSQL calls are under the step.
    assert any(
        first_call in turn.ancestors(span) and span.attributes.get("url.full") == f"{llm_url}/v1/messages"
        for span in turn.spans
        if span.kind == "client"
    )
    assert any(
        span.attributes.get("db.system") == "postgresql" and first_step in turn.ancestors(span)
        for span in turn.spans
    )

    # Tool selection: chat asks tools, tools embeds the question through embeddings.
    selections = [
        span
        for span in turn.named("victor-tools", "POST /v1/tools/select")
        if first_step in turn.ancestors(span)
    ]
    assert len(selections) == 1
    embedded = [
        s
        for s in turn.named("victor-embeddings", "POST /v1/embeddings")
        if selections[0] in turn.ancestors(s)
    ]
    assert embedded
    batches = [
        s
        for s in turn.named("victor-embeddings", "embeddings batch")
        if any(e in turn.ancestors(s) for e in embedded)
    ]
    assert batches

    # chat's reply re-enters the broker under the delivery that brought it, and goes on to tools.
    tools_requested = turn.child(delivered, "victor-broker", "reply ai.victor.tools.requested")
    to_tools = turn.child(tools_requested, "victor-broker", "deliver victor-tools-requested")
    tools_post = turn.child(to_tools, "victor-tools", "POST /")
    tools_step = turn.child(tools_post, "victor-tools", "tools ai.victor.tools.requested")
    ran = turn.child(tools_step, "victor-tools", "execute_tool read_file")
    assert ran.attributes["gen_ai.tool.call.id"] == "toolu_read" and not ran.error

    # tools' reply goes back to chat, which makes the second LLM call and answers.
    tools_completed = turn.child(to_tools, "victor-broker", "reply ai.victor.tools.completed")
    to_chat = turn.child(tools_completed, "victor-broker", "deliver victor-tools-completed")
    second_post = turn.child(to_chat, "victor-chat", "POST /")
    second_step = turn.child(second_post, "victor-chat", "chat ai.victor.tools.completed")
    second_call = turn.child(second_step, "victor-chat", f"chat {MODEL}")
    assert second_call.attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert second_call.attributes["gen_ai.usage.input_tokens"] == 140  # cached input counted too
    assert second_call.attributes["gen_ai.usage.cache_read.input_tokens"] == 100

    # A route with a parameter is named by its template.
    viewed_span = turn.one("victor-chat", "GET /v1/conversations/{conversation_id}")
    assert viewed_span.parent_id == CALLER_SPAN
    assert viewed_span.attributes["http.route"] == "/v1/conversations/{conversation_id}"
    assert viewed_span.attributes["url.path"] == f"/v1/conversations/{conversation}"


GENAI_KEYS = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.finish_reasons",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
)
