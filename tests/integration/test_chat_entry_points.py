"""The chat function's other entry points: functions-framework (its own process) and `victor chat`."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from eventing.cli.main import build_parser
from tests.support.chat import (
    TEST_KEY,
    anthropic_env,
    chat_function,
    chat_settings,
    fake_anthropic,
    sse_events,
)
from tests.support.fake_anthropic import Failure, Reply, text
from tests.support.foundation import clean_env, functions_framework, serving


async def test_functions_framework_serves_chat_stream_and_conversations(services, tmp_path) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Reply([text("Answer under functions-framework.")]), Reply([text("Streamed too.")], chunk=4))
        env = clean_env(**services.env(WORKSPACE_DIR=str(tmp_path), **anthropic_env(llm_url)))
        async with (
            serving(functions_framework("functions/chat/main.py"), env, tmp_path / "ff.log") as served,
            httpx.AsyncClient(base_url=served.url, timeout=60) as client,
        ):
            answered = await client.post("/v1/chat", json={"message": "hi"})
            assert answered.status_code == 200, answered.text
            body = answered.json()
            streamed = await client.post(
                "/v1/chat",
                json={"message": "again", "conversation_id": body["conversation_id"], "stream": True},
            )
            view = await client.get(f"/v1/conversations/{body['conversation_id']}")
            missing = await client.get("/v1/conversations/nope")
            invalid = await client.post("/v1/chat", json={"message": 3})
            health = (await client.get("/health")).json()
    assert body["answer"] == "Answer under functions-framework."
    assert [name for name, _ in sse_events(streamed.text)] == ["text"] * 4 + ["done"]
    assert [m["role"] for m in view.json()["messages"]] == ["user", "assistant", "user", "assistant"]
    assert (missing.status_code, missing.json()["detail"]) == (404, "conversation nope does not exist")
    assert invalid.status_code == 422
    assert {d["name"]: d["state"] for d in health["dependencies"]}["provider"] == "up"
    assert TEST_KEY not in (tmp_path / "ff.log").read_text()


def run_cli(argv: list[str], settings) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args, settings))


async def test_victor_chat_streams_the_answer_and_tool_activity(
    make_settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(
            Reply([text("Hello from the CLI.")], input_tokens=10, output_tokens=4),
            Reply([text("Plain answer.")], input_tokens=20, output_tokens=3),
        )
        async with chat_function(make_settings, chat_settings(), **anthropic_env(llm_url)) as (url, _):
            client_settings = make_settings(VICTOR_CHAT_URL=url)
            streamed = await asyncio.to_thread(run_cli, ["chat", "hello"], client_settings)
            out = capsys.readouterr()
            plain = await asyncio.to_thread(run_cli, ["chat", "again", "--no-stream"], client_settings)
            plain_out = capsys.readouterr()
    assert streamed == 0
    assert out.out == "Hello from the CLI.\n"
    assert "10 in, 4 out, 0 cache read, 0 cache write; $0.000090]" in out.err
    assert plain == 0
    assert plain_out.out == "Plain answer.\n"


async def test_victor_chat_reports_an_unreachable_function_in_one_line(
    make_settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(VICTOR_CHAT_URL="http://127.0.0.1:9")
    assert await asyncio.to_thread(run_cli, ["chat", "hello"], settings) == 1
    assert (
        capsys.readouterr().err
        == "victor: cannot reach the chat function at http://127.0.0.1:9: ConnectError\n"
    )


async def test_victor_chat_prints_the_functions_error(
    make_settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fake_anthropic() as (llm, llm_url):
        llm.push(Failure(400, "prompt is too long"))
        async with chat_function(make_settings, chat_settings(), **anthropic_env(llm_url)) as (url, _):
            code = await asyncio.to_thread(
                run_cli, ["chat", "hello", "--no-stream"], make_settings(VICTOR_CHAT_URL=url)
            )
    assert code == 1
    assert capsys.readouterr().err == (
        "victor: HTTP 502: Anthropic answered 400: invalid_request_error: prompt is too long\n"
    )
