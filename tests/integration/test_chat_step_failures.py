"""Chat never wedges: a step that fails ends its request at once with `ai.victor.chat.failed`, and the
conversation takes the next message.

The provider misbehaves through the real SDKs (the fake servers' `Malformed` answers: a plain JSON
body to a streaming request, garbage SSE); the chat function is served for real, on its own and
behind the real broker, against real PostgreSQL and Redis. The wait timeout is the default 300 s:
a request that hung until it would fail these tests on the client's 60 s timeout instead.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest

from common.store import Store
from eventing.dev.embedded import free_port
from eventing.schemas.chat import CHAT_REQUESTED
from functions.chat.app import create
from functions.chat.conversation_store import ConversationStore
from tests.support.broker import Subscriber, broker_manifest, dead_lettered, mesh, trigger_manifest
from tests.support.chat import (
    anthropic_env,
    chat_function,
    chat_settings,
    fake_anthropic,
    fake_openai,
    sse_events,
)
from tests.support.fake_anthropic import FakeAnthropic, Reply, text
from tests.support.fake_llm import Malformed
from tests.support.fake_openai import Completion
from tests.support.foundation import unique
from tests.support.servers import running

PATIENT = chat_settings(wait_timeout=300.0)
# What Anthropic answers to a request without `stream`: given to one that asked to stream.
PLAIN_MESSAGE = msgspec.json.encode(FakeAnthropic.message(Reply([text("not a stream")]), "claude-sonnet-4-5"))
ANTHROPIC_NOT_A_STREAM = "Anthropic sent an answer that is not a valid API response (AssertionError)"


async def test_a_stream_answered_with_plain_json_fails_at_once_and_the_conversation_goes_on(
    make_settings,
) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Malformed(PLAIN_MESSAGE), Reply([text("Back to normal.")]))
        async with (
            chat_function(make_settings, PATIENT, **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=60) as client,
        ):
            streamed = await client.post("/v1/chat", json={"message": "hi", "stream": True})
            conversation_id = streamed.headers["x-conversation-id"]
            following = await client.post(
                "/v1/chat", json={"message": "again", "conversation_id": conversation_id}
            )
            view = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    assert streamed.status_code == 200
    events = sse_events(streamed.text)
    assert [name for name, _ in events] == ["error"]
    failed = events[0][1]
    assert failed["code"] == "provider_error"
    assert failed["error"] == ANTHROPIC_NOT_A_STREAM
    assert failed["conversation_id"] == conversation_id
    assert following.status_code == 200
    assert following.json()["answer"] == "Back to normal."
    assert [(r["status"], r["code"]) for r in view["requests"]] == [
        ("failed", "provider_error"),
        ("completed", None),
    ]
    assert view["phase"] == "idle"
    assert len(llm.requests) == 2  # the malformed answer was not asked for again


async def test_garbage_sse_from_an_openai_compatible_server_is_a_502_in_openais_envelope(
    make_settings,
) -> None:
    async with fake_openai() as (llm, llm_url):
        llm.push(Malformed(b"data: {not json\n\n", "text/event-stream"), Completion(text="Fine now."))
        env = {"OPENAI_BASE_URL": f"{llm_url}/v1"}
        chat = chat_settings(provider="openai", model="gpt-4o", wait_timeout=300.0)
        async with (
            chat_function(make_settings, chat, **env) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=60) as client,
        ):
            broken = await client.post(
                "/v1/chat/completions",
                json={"model": "victor", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            )
            conversation_id = broken.headers["x-conversation-id"]
            following = await client.post(
                "/v1/chat/completions",
                json={"model": "victor", "messages": [{"role": "user", "content": "again"}]},
                headers={"x-conversation-id": conversation_id},
            )
    frames = [line[6:] for line in broken.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    error = msgspec.json.decode(frames[-2])["error"]
    assert error["code"] == "provider_error"
    assert error["type"] == "server_error"
    assert error["message"].startswith(
        "the OpenAI-compatible server sent an answer that is not a valid API response (JSONDecodeError: "
    )
    assert following.status_code == 200
    assert following.json()["choices"][0]["message"]["content"] == "Fine now."


async def test_behind_the_broker_a_failed_step_answers_the_waiter_at_once_and_nothing_is_dead_lettered(
    make_settings, tmp_path: Path
) -> None:
    dead_letters = Subscriber()
    chat_port = free_port()
    chat_url = f"http://127.0.0.1:{chat_port}"
    async with (
        fake_anthropic() as (llm, llm_url),
        running(dead_letters) as sink,
    ):
        settings = make_settings()
        trigger = trigger_manifest(
            "chat", f"{chat_url}/", filter={"type": CHAT_REQUESTED}, delivery=dead_lettered(3, sink)
        )
        async with mesh(settings, tmp_path, broker_manifest(), trigger) as (ingress, _broker):
            chat_app = create(make_settings(VICTOR_BROKER_URL=ingress, **anthropic_env(llm_url)), PATIENT)
            # As many broken answers as the Trigger's attempts: a retried step would meet only these.
            llm.push(*[Malformed(b"<html>502 Bad Gateway</html>", "text/html")] * 4)
            async with (
                running(chat_app, port=chat_port),
                httpx.AsyncClient(base_url=chat_url, timeout=60) as client,
            ):
                failed = await client.post("/v1/chat", json={"message": "hi"})
                conversation_id = failed.json()["extra"]["conversation_id"]
                asked = len(llm.requests)
                llm.script.clear()
                llm.push(Reply([text("Answered.")]))
                following = await client.post(
                    "/v1/chat", json={"message": "again", "conversation_id": conversation_id}
                )
    assert failed.status_code == 502
    body = failed.json()
    assert body["error"] == "provider_error"
    assert body["detail"] == (
        "Anthropic sent an answer that is not a valid API response"
        " (AttributeError: 'str' object has no attribute 'content')"
    )
    assert following.status_code == 200
    assert following.json()["answer"] == "Answered."
    assert asked == 1  # the failed step was not retried
    assert dead_letters.received == []


STALLED = {
    # An LLM call whose replica stopped after claiming it, its lease lapsed an hour ago.
    "llm": "UPDATE chat_conversations SET claimed_at = now() - interval '1 hour' WHERE id = $1",
    # Tool results that never came back (their tools.completed lost), asked for an hour ago.
    "tools": "UPDATE chat_conversations SET phase = 'tools', claimed_at = NULL,"
    " updated_at = now() - interval '1 hour' WHERE id = $1",
}
# The step timeout of the test settings: 4 tries of 10 s, 3 waits of 0.05 s, and 30 s to spare.
STALLED_ERROR = {
    "llm": "step 0 of conversation {id} was not taken within 70.15s",
    "tools": "the tool results of step 0 of conversation {id} did not come within 70.15s",
}


@pytest.mark.parametrize("phase", ["llm", "tools"])
async def test_a_step_left_too_long_ends_its_request_when_the_next_message_comes(
    make_settings, phase
) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text("Taken over.")]))
        async with (
            chat_function(make_settings, PATIENT, **anthropic_env(llm_url)) as (url, settings),
            httpx.AsyncClient(base_url=url, timeout=60) as client,
        ):
            # A request whose replica stopped right after it claimed the first step.
            conversation_id = unique("stalled")
            store = Store(settings.database_dsn)
            try:
                await ConversationStore(store).begin(
                    conversation_id=conversation_id,
                    request_id=unique("stalled-request"),
                    message="first",
                    provider="anthropic",
                    model="claude-sonnet-4-5",
                    max_tokens=100,
                    system=None,
                    stream=False,
                )
                busy = await client.post(
                    "/v1/chat", json={"message": "second", "conversation_id": conversation_id}
                )
                pool = await store.pool()
                await pool.execute(STALLED[phase], conversation_id)
            finally:
                await store.close()
            taken = await client.post(
                "/v1/chat", json={"message": "third", "conversation_id": conversation_id}
            )
            view = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    assert (busy.status_code, busy.json()["error"]) == (409, "conversation_busy")
    assert taken.status_code == 200
    assert taken.json()["answer"] == "Taken over."
    assert [(r["status"], r["code"]) for r in view["requests"]] == [
        ("failed", "step_expired"),
        ("completed", None),
    ]
    assert view["requests"][0]["error"] == STALLED_ERROR[phase].format(id=conversation_id) + (
        " (its replica stopped, or its event was lost); the next message ended it"
    )
    assert view["phase"] == "idle"
    assert len(llm.requests) == 1
