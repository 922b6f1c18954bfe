"""POST /v1/chat streaming survives proxies: an id on every event, Last-Event-ID resumes, `: ping` in silence.

The chat function is served for real (Litestar, and functions-framework in its
own process) against real Redis and PostgreSQL, with the fake Anthropic server.
"""

from __future__ import annotations

import httpx

from tests.support.chat import anthropic_env, chat_function, chat_settings, fake_anthropic, sse_events
from tests.support.fake_anthropic import Reply, text
from tests.support.foundation import clean_env, functions_framework, serving

ANSWER = "Resumable streams are here."


def event_ids(body: str) -> list[str]:
    """The `id:` of each event block (None-free: a block with data and no id fails the caller's check)."""
    ids = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        lines = block.split("\n")
        if any(line.startswith("data:") for line in lines):
            ids.append(next((line[3:].strip() for line in lines if line.startswith("id:")), ""))
    return ids


async def test_every_event_has_an_id_and_a_quiet_stream_gets_pings(make_settings) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text(ANSWER)], chunk=10, delay=0.6))
        async with (
            chat_function(make_settings, chat_settings(sse_ping=0.1), **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            response = await client.post("/v1/chat", json={"message": "hi", "stream": True})
    request_id = response.headers["x-request-id"]
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["text"] * 3 + ["done"]
    assert event_ids(response.text) == [f"{request_id}:{n}" for n in range(1, 5)]
    # The model waits 0.6 s before its first token: the stream says it is alive meanwhile.
    assert response.text.startswith(": ping\n\n")


async def test_last_event_id_resumes_the_stream_after_that_event(make_settings) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text(ANSWER)], chunk=4))
        async with (
            chat_function(make_settings, chat_settings(), **anthropic_env(llm_url)) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            body = {"message": "hi", "stream": True}
            first = await client.post("/v1/chat", json=body)
            ids = event_ids(first.text)
            resumed = await client.post("/v1/chat", json=body, headers={"Last-Event-ID": ids[2]})
            unknown = await client.post("/v1/chat", json=body, headers={"Last-Event-ID": "nope:3"})
    assert len(llm.requests) == 1  # the reconnection started no second request
    assert resumed.status_code == 200
    assert event_ids(resumed.text) == ids[3:]
    replayed = sse_events(resumed.text)
    assert replayed == sse_events(first.text)[3:]
    assert replayed[-1][0] == "done" and replayed[-1][1]["answer"] == ANSWER
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")


async def test_functions_framework_streams_as_it_goes(services, tmp_path) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text(ANSWER)], chunk=10, delay=1.5))
        env = clean_env(
            **services.env(WORKSPACE_DIR=str(tmp_path), VICTOR_CHAT_SSE_PING="0.2", **anthropic_env(llm_url))
        )
        async with (
            serving(functions_framework("functions/chat/main.py"), env, tmp_path / "ff.log") as served,
            httpx.AsyncClient(base_url=served.url, timeout=60) as client,
            client.stream("POST", "/v1/chat", json={"message": "hi", "stream": True}) as response,
        ):
            chunks = [chunk async for chunk in response.aiter_bytes()]
    # A buffered answer would arrive as one piece with the done event in it.
    assert chunks[0] == b": ping\n\n"
    assert [name for name, _ in sse_events(b"".join(chunks).decode())] == ["text"] * 3 + ["done"]
