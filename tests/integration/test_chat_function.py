"""The chat function over real HTTP, PostgreSQL and Redis; the real Anthropic SDK against a fake server."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import httpx
import pytest

from common.cloudevents import new_event
from common.metrics import REGISTRY, exposition
from eventing.client import send_event
from eventing.schemas.chat import CHAT_COMPLETED, CHAT_FAILED, CHAT_REQUESTED
from eventing.schemas.tools import TOOLS_COMPLETED, TOOLS_REQUESTED
from functions.chat.app import create
from tests.support.chat import anthropic_env, chat_function, chat_settings, fake_anthropic, sse_events
from tests.support.fake_anthropic import Failure, Reply, text, tool_use
from tests.support.servers import running

SONNET = chat_settings().price("claude-sonnet-4-5")


def sonnet_cost(input: int, output: int, cache_read: int = 0, cache_write: int = 0) -> Decimal:
    return chat_settings().cost("claude-sonnet-4-5", input, output, cache_read, cache_write)


def sample(name: str, **labels: str) -> float:
    return (
        REGISTRY.get_sample_value(name, {"provider": "anthropic", "model": "claude-sonnet-4-5", **labels})
        or 0.0
    )


LLM_SAMPLES = (
    ("victor_llm_requests_total", {"outcome": "ok"}),
    ("victor_llm_tokens_total", {"kind": "input"}),
    ("victor_llm_tokens_total", {"kind": "output"}),
    ("victor_llm_tokens_total", {"kind": "cache_read"}),
    ("victor_llm_tokens_total", {"kind": "cache_write"}),
    ("victor_llm_cost_usd_total", {}),
    ("victor_llm_duration_seconds_count", {}),
    ("victor_llm_time_to_first_token_seconds_count", {}),
)


def llm_samples() -> list[float]:
    return [sample(name, **labels) for name, labels in LLM_SAMPLES]


async def llm_calls(database_url: str, conversation_id: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(
            "SELECT turn, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,"
            " from_cache FROM chat_llm_calls WHERE conversation_id = $1 ORDER BY turn",
            conversation_id,
        )
    finally:
        await connection.close()


async def test_without_a_provider_chat_answers_503_naming_the_setting_and_health_says_unconfigured(
    make_settings,
) -> None:
    settings = make_settings()
    app = create(settings, chat_settings(provider=None))
    async with running(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/v1/chat", json={"message": "hello"})
        assert response.status_code == 503
        assert response.json()["detail"] == (
            "no LLM provider is configured: set ANTHROPIC_API_KEY for Anthropic, "
            "or OPENAI_API_KEY and/or OPENAI_BASE_URL for an OpenAI-compatible server"
        )
        health = (await client.get("/health")).json()
        states = {d["name"]: d["state"] for d in health["dependencies"]}
        assert states == {"redis": "up", "postgres": "up", "provider": "unconfigured"}
        assert health["ready"] is True
        assert (await client.get("/health/ready")).status_code == 200
        missing = await client.get("/v1/conversations/nope")
        assert missing.status_code == 404
        assert missing.json()["detail"] == "conversation nope does not exist"


async def test_post_chat_answers_with_the_reply_usage_and_exact_cost(make_settings, services) -> None:
    before = llm_samples()
    async with fake_anthropic() as (llm, llm_url):
        llm.push(
            Reply(
                [text("Hello, I am Victor.")],
                input_tokens=1200,
                output_tokens=80,
                cache_read_input_tokens=3000,
                cache_creation_input_tokens=400,
            )
        )
        async with (
            chat_function(make_settings, chat_settings(), **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            response = await client.post("/v1/chat", json={"message": "Who are you?", "system": "Be brief."})
            assert response.status_code == 200, response.text
            body = response.json()
            view = (await client.get(f"/v1/conversations/{body['conversation_id']}")).json()
    cost = sonnet_cost(1200, 80, 3000, 400)
    assert cost == Decimal("0.0036") + Decimal("0.0012") + Decimal("0.0009") + Decimal("0.0015")
    assert body["answer"] == "Hello, I am Victor."
    assert body["stop_reason"] == "end_turn"
    assert body["tool_calls"] == []
    assert body["llm_calls"] == 1
    assert body["usage"] == {
        "input_tokens": 1200,
        "output_tokens": 80,
        "cache_read_tokens": 3000,
        "cache_write_tokens": 400,
        "cost_usd": float(cost),
    }
    [call] = await llm_calls(services.database_url, body["conversation_id"])
    assert call["cost_usd"] == cost
    added = [after - was for after, was in zip(llm_samples(), before, strict=True)]
    assert added == [1, 1200, 80, 3000, 400, pytest.approx(float(cost)), 1, 0]
    assert [(m["role"], m["content"]) for m in view["messages"]] == [
        ("user", [{"type": "text", "text": "Who are you?"}]),
        ("assistant", [{"type": "text", "text": "Hello, I am Victor."}]),
    ]
    assert view["requests"][0]["system"] == "Be brief."
    assert llm.requests[0].body["system"][0]["text"] == "Be brief."


async def test_post_chat_stream_sends_text_deltas_then_done(make_settings) -> None:
    first_tokens = sample("victor_llm_time_to_first_token_seconds_count")
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text("Streaming works fine.")], chunk=5))
        async with (
            chat_function(make_settings, chat_settings(), **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            response = await client.post("/v1/chat", json={"message": "stream please", "stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["text"] * 5 + ["done"]
    assert "".join(data["text"] for name, data in events if name == "text") == "Streaming works fine."
    assert events[-1][1]["answer"] == "Streaming works fine."
    assert llm.requests[0].body["stream"] is True
    assert sample("victor_llm_time_to_first_token_seconds_count") == first_tokens + 1


async def test_follow_up_continues_the_stored_conversation(make_settings) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text("First answer.")]), Reply([text("Second answer.")]))
        async with (
            chat_function(make_settings, chat_settings(), **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            first = (await client.post("/v1/chat", json={"message": "one", "system": "S"})).json()
            second = await client.post(
                "/v1/chat", json={"message": "two", "conversation_id": first["conversation_id"]}
            )
            unknown = await client.post(
                "/v1/chat", json={"message": "x", "conversation_id": "does-not-exist"}
            )
            invalid = await client.post("/v1/chat", json={"message": "", "max_tokens": 0})
    assert second.json()["answer"] == "Second answer."
    assert llm.requests[1].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "First answer."}]},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
    ]
    assert llm.requests[1].body["system"][0]["text"] == "S"
    assert unknown.status_code == 404
    assert invalid.status_code == 422


async def test_tool_round_as_events_and_redelivered_results_make_one_llm_call(
    make_settings, services
) -> None:
    conversation = f"conv-events-{uuid.uuid4()}"
    async with fake_anthropic() as (llm, llm_url):
        llm.push(
            Reply(
                [
                    text("I will read it."),
                    tool_use("toolu_a", "read_file", {"path": "README.md"}),
                    tool_use("toolu_b", "grep", {"pattern": "main"}),
                ],
                input_tokens=100,
                output_tokens=40,
            ),
            Reply(
                [text("README says hello.")], input_tokens=300, output_tokens=20, cache_read_input_tokens=90
            ),
        )
        async with (
            chat_function(make_settings, chat_settings(), **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(timeout=30) as http,
        ):
            requested = new_event(
                CHAT_REQUESTED,
                "/test",
                {"message": "What does README.md say?", "conversation_id": conversation},
            )
            tools_requested = await send_event(http, url, requested)
            assert tools_requested is not None and tools_requested.type == TOOLS_REQUESTED
            asked = tools_requested.json()
            assert asked["conversation_id"] == conversation
            assert asked["turn"] == 0
            assert asked["calls"] == [
                {"id": "toolu_a", "name": "read_file", "arguments": {"path": "README.md"}},
                {"id": "toolu_b", "name": "grep", "arguments": {"pattern": "main"}},
            ]
            assert tools_requested.extensions["conversationid"] == conversation
            results = {
                "conversation_id": conversation,
                "turn": 0,
                "results": [
                    {
                        "id": "toolu_a",
                        "name": "read_file",
                        "is_error": False,
                        "content": "hello",
                        "duration_ms": 1.5,
                    },
                    {
                        "id": "toolu_b",
                        "name": "grep",
                        "is_error": False,
                        "content": "main.py:1",
                        "duration_ms": 2.0,
                    },
                ],
            }
            completed = await send_event(http, url, new_event(TOOLS_COMPLETED, "/victor/tools", results))
            # Redelivered: the same event id, and the same results under a new id (a re-sent reply).
            again_same_id = await send_event(
                http, url, new_event(TOOLS_COMPLETED, "/victor/tools", results, id=None)
            )
            duplicate = new_event(TOOLS_COMPLETED, "/victor/tools", results)
            first_delivery = await send_event(http, url, duplicate)
            second_delivery = await send_event(http, url, duplicate)
            chat_again = await send_event(http, url, requested)
    assert completed is not None and completed.type == CHAT_COMPLETED
    assert len(llm.requests) == 2
    for reply in (again_same_id, first_delivery, second_delivery, chat_again):
        assert reply is not None
    assert {again_same_id.id, first_delivery.id, second_delivery.id} == {completed.id}
    # chat.requested redelivered answers with its own step's reply again.
    assert chat_again.id == tools_requested.id
    answer = completed.json()
    assert answer["answer"] == "README says hello."
    assert [c["name"] for c in answer["tool_calls"]] == ["read_file", "grep"]
    assert answer["tool_calls"][0]["content"] == "hello"
    assert answer["llm_calls"] == 2
    assert answer["usage"]["input_tokens"] == 400
    second = llm.requests[1].body["messages"]
    assert second[-1] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "hello", "is_error": False},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "main.py:1", "is_error": False},
        ],
    }
    rows = await llm_calls(services.database_url, conversation)
    assert [(r["turn"], r["cost_usd"]) for r in rows] == [
        (0, sonnet_cost(100, 40)),
        (1, sonnet_cost(300, 20, 90)),
    ]


async def test_max_tool_rounds_ends_the_request_with_chat_failed(make_settings) -> None:
    conversation = f"conv-max-{uuid.uuid4()}"
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([tool_use("toolu_1", "grep", {"pattern": "x"})]))
        async with (
            chat_function(make_settings, chat_settings(max_tool_rounds=1), **anthropic_env(llm_url)) as (
                url,
                _,
            ),
            httpx.AsyncClient(timeout=30) as http,
        ):
            await send_event(
                http,
                url,
                new_event(CHAT_REQUESTED, "/test", {"message": "loop", "conversation_id": conversation}),
            )
            results = {
                "conversation_id": conversation,
                "turn": 0,
                "results": [{"id": "toolu_1", "name": "grep", "is_error": False, "content": "x"}],
            }
            failed = await send_event(http, url, new_event(TOOLS_COMPLETED, "/victor/tools", results))
            view = (await http.get(f"{url}/v1/conversations/{conversation}")).json()
    assert failed is not None and failed.type == CHAT_FAILED
    assert failed.json()["code"] == "max_tool_rounds"
    assert failed.json()["error"] == (
        "the model asked for tools 1 times; the limit is 1 tool rounds per request"
        " (VICTOR_CHAT_MAX_TOOL_ROUNDS)"
    )
    assert len(llm.requests) == 1
    assert view["phase"] == "idle"
    assert view["requests"][0]["status"] == "failed"


async def test_provider_errors_end_with_chat_failed_carrying_the_providers_message(make_settings) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Failure(400, "messages: text content blocks must be non-empty"))
        llm.push(*[Failure(529, "Overloaded", retry_after="0")] * 3)
        async with (
            chat_function(make_settings, chat_settings(max_retries=2), **anthropic_env(llm_url)) as (
                url,
                _,
            ),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            rejected = await client.post("/v1/chat", json={"message": "bad"})
            overloaded = await client.post("/v1/chat", json={"message": "busy"})
    assert rejected.status_code == 502
    assert rejected.json()["detail"] == (
        "Anthropic answered 400: invalid_request_error: messages: text content blocks must be non-empty"
    )
    assert rejected.json()["extra"]["code"] == "provider_rejected"
    assert rejected.json()["extra"]["provider_status"] == 400
    assert overloaded.status_code == 502
    assert overloaded.json()["detail"] == "Anthropic answered 529: overloaded_error: Overloaded"
    assert len(llm.requests) == 1 + 3


async def test_identical_requests_at_temperature_zero_are_answered_from_the_response_cache(
    make_settings, services
) -> None:
    chat = chat_settings(temperature=0.0, response_cache=True)
    question = f"same question {uuid.uuid4()}"  # Redis outlives a test run; a fresh question starts uncached
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text("Cached answer.")], input_tokens=50, output_tokens=5))
        async with (
            chat_function(make_settings, chat, **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            first = (await client.post("/v1/chat", json={"message": question})).json()
            second = (await client.post("/v1/chat", json={"message": question})).json()
            metrics_text = (await client.get("/metrics")).text
    assert len(llm.requests) == 1, first
    assert llm.requests[0].body["temperature"] == 0.0
    assert second["answer"] == "Cached answer."
    assert second["usage"]["input_tokens"] == 0
    [row] = await llm_calls(services.database_url, second["conversation_id"])
    assert row["from_cache"] is True
    assert first["usage"]["input_tokens"] == 50
    assert 'victor_cache_requests_total{cache="llm_responses",result="hit"}' in metrics_text
    hits = REGISTRY.get_sample_value(
        "victor_cache_requests_total", {"cache": "llm_responses", "result": "hit"}
    )
    assert hits is not None and hits >= 1
    assert (
        'victor_llm_requests_total{model="claude-sonnet-4-5",outcome="cached",provider="anthropic"}'
        in metrics_text
    )


async def test_results_for_a_round_that_never_happened_are_rejected_with_422(make_settings) -> None:
    async with (
        fake_anthropic() as (llm, llm_url),
        chat_function(make_settings, chat_settings(), **anthropic_env(llm_url)) as (url, _),
        httpx.AsyncClient(timeout=30) as http,
    ):
        stray = {"conversation_id": "never-started", "turn": 3, "results": []}
        response = await http.post(
            f"{url}/",
            headers={
                "ce-specversion": "1.0",
                "ce-id": str(uuid.uuid4()),
                "ce-source": "/victor/tools",
                "ce-type": TOOLS_COMPLETED,
                "content-type": "application/json",
            },
            json=stray,
        )
        bad = await http.post(
            f"{url}/",
            headers={
                "ce-specversion": "1.0",
                "ce-id": str(uuid.uuid4()),
                "ce-source": "/test",
                "ce-type": CHAT_REQUESTED,
                "content-type": "application/json",
            },
            json={"conversation_id": "x"},
        )
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "conversation never-started has no tool round 3; the event does not answer any tools.requested"
    )
    assert bad.status_code == 422
    assert "message" in bad.json()["detail"]
    assert llm.requests == []


async def test_post_chat_run_here_goes_through_the_event_pipeline_claim_metrics_and_all(
    make_settings,
) -> None:
    def replied() -> float:
        labels = {"function": "chat", "type": CHAT_REQUESTED, "outcome": "replied"}
        return REGISTRY.get_sample_value("victor_events_total", labels) or 0.0

    before = replied()
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text("Answered once.")]))
        async with (
            chat_function(make_settings, chat_settings(), **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            response = await client.post("/v1/chat", json={"message": "once"})
            # The same step delivered again by (source, id) gets the stored reply: it was claimed.
            redelivered = await client.post(
                "/",
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": response.headers["x-request-id"],
                    "ce-source": "/victor/chat",
                    "ce-type": CHAT_REQUESTED,
                    "content-type": "application/json",
                },
                json={"message": "once"},
            )
    assert response.status_code == 200 and response.json()["answer"] == "Answered once."
    assert redelivered.status_code == 200
    assert redelivered.headers["ce-type"] == CHAT_COMPLETED
    assert len(llm.requests) == 1
    assert replied() == before + 1


async def test_a_model_a_request_names_is_never_a_metric_label_unless_configured(make_settings) -> None:
    chosen = f"user-chosen-{uuid.uuid4().hex}"
    other_before = sample("victor_llm_requests_total", outcome="ok", model="other")
    listed_before = sample("victor_llm_requests_total", outcome="ok", model="claude-haiku-4-5")
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text("one")]))
        llm.push(Reply([text("two")]))
        settings = chat_settings(models=("claude-haiku-4-5",))
        async with (
            chat_function(make_settings, settings, **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            for model in (chosen, "claude-haiku-4-5-20251001"):
                response = await client.post("/v1/chat", json={"message": "hi", "model": model})
                assert response.status_code == 200, response.text
    assert [request.body["model"] for request in llm.requests] == [chosen, "claude-haiku-4-5-20251001"]
    assert sample("victor_llm_requests_total", outcome="ok", model="other") == other_before + 1
    assert sample("victor_llm_requests_total", outcome="ok", model="claude-haiku-4-5") == listed_before + 1
    assert chosen not in exposition()[0].decode()
