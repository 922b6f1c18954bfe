"""`victor send` as a user runs it: a real CLI process against real HTTP receivers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from eventing.dev.embedded import free_port
from functions.health.app import create
from tests.support.recorder import EventRecorder
from tests.support.servers import running

ROOT = Path(__file__).parents[2]


async def victor_send(*args: str, **env: str) -> tuple[int, str, str]:
    """Run `victor send ARGS` in a fresh process; returns (exit status, stdout, stderr)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("VICTOR_BROKER_URL", "K_SINK")}
    environ.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventing.cli",
        "send",
        *args,
        cwd=str(ROOT),
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_send_to_a_function_prints_its_reply_event_as_json(make_settings) -> None:
    async with running(create(make_settings())) as url:
        code, out, err = await victor_send(
            "dev.knative.sources.ping", "--data", '{"message": "tick"}', "--id", "send-ping-1", "--to", url
        )
    assert (code, err) == (0, "")
    reply = json.loads(out)
    assert reply["specversion"] == "1.0"
    assert reply["type"] == "ai.victor.health.reported"
    assert reply["source"] == "/victor/health"
    assert reply["subject"] == "send-ping-1"
    assert reply["data"]["status"] == "ok"
    assert [c["name"] for c in reply["data"]["components"]] == ["redis", "postgres"]


async def test_send_delivers_type_source_extensions_and_data() -> None:
    receiver = EventRecorder(status=202)
    async with running(receiver) as url:
        code, out, err = await victor_send(
            "ai.victor.search.requested",
            "--data",
            '{"query": "parse yaml", "limit": 3}',
            "--source",
            "/tests/send",
            "--subject",
            "repo-1",
            "--extension",
            "conversationid=c-42",
            "--to",
            f"{url}/hook",
        )
    assert (code, err) == (0, "")
    assert out == f"accepted by {url}/hook (no reply event)\n"
    (request,) = receiver.requests
    assert request.path == "/hook"
    event = request.event()
    assert (event.type, event.source, event.subject) == (
        "ai.victor.search.requested",
        "/tests/send",
        "repo-1",
    )
    assert event.extensions["conversationid"] == "c-42"
    assert event.datacontenttype == "application/json"
    assert event.json() == {"query": "parse yaml", "limit": 3}


async def test_send_goes_to_the_broker_url_from_the_environment_by_default() -> None:
    receiver = EventRecorder(status=202)
    async with running(receiver) as url:
        code, _, _ = await victor_send(
            "dev.knative.sources.ping", "--data", "{}", VICTOR_BROKER_URL=f"{url}/victor/default"
        )
    assert code == 0
    assert [(r.method, r.path) for r in receiver.requests] == [("POST", "/victor/default")]
    assert receiver.requests[0].event().type == "dev.knative.sources.ping"


async def test_invalid_json_data_is_a_one_line_error_with_status_2() -> None:
    code, out, err = await victor_send(
        "ai.victor.chat.requested", "--data", "{not json", "--to", "http://127.0.0.1:9/"
    )
    assert code == 2
    assert out == ""
    assert err.startswith("victor: --data is not valid JSON: ")
    assert err.count("\n") == 1


async def test_an_invalid_extension_name_is_a_one_line_error_with_status_2() -> None:
    code, _, err = await victor_send("x.y", "--extension", "Conversation=1", "--to", "http://127.0.0.1:9/")
    assert code == 2
    assert (
        err
        == "victor: attribute name 'Conversation' is invalid; names are lowercase letters and digits only\n"
    )


async def test_an_unreachable_target_is_a_one_line_error_with_status_1() -> None:
    target = f"http://127.0.0.1:{free_port()}/"
    code, out, err = await victor_send("dev.knative.sources.ping", "--data", "{}", "--to", target)
    assert (code, out) == (1, "")
    assert err == f"victor: cannot reach {target}: ConnectError\n"


async def test_a_rejected_event_reports_the_status_on_one_line_with_status_1() -> None:
    body = b'{"status_code": 422,\n "error": "invalid_data", "detail": "missing field query"}'
    receiver = EventRecorder(status=422, body=body)
    async with running(receiver) as url:
        code, _, err = await victor_send("ai.victor.search.requested", "--data", "{}", "--to", url)
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(f"victor: {url} did not accept the event: event not accepted: HTTP 422: ")
    assert "missing field query" in err
    assert "Traceback" not in err
