"""ai.victor.tools.requested → ai.victor.tools.completed, and redelivery never re-runs a write."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from common.cloudevents import CloudEvent, from_http, new_event, to_binary
from eventing.schemas.tools import TOOLS_COMPLETED, TOOLS_REQUESTED, ToolCall, ToolsCompleted, ToolsRequested
from tests.support.tools import ToolsServer, tools_server


def request_event(conversation: str, calls: list[ToolCall], *, event_id: str | None = None) -> CloudEvent:
    payload = ToolsRequested(conversation_id=conversation, turn=3, calls=calls)
    return new_event(
        TOOLS_REQUESTED, "/victor/chat", payload, id=event_id, extensions={"conversationid": conversation}
    )


async def deliver(server: ToolsServer, event: CloudEvent) -> tuple[CloudEvent, ToolsCompleted]:
    headers, body = to_binary(event)
    response = await server.client.post("/", headers=headers, content=body)
    assert response.status_code == 200, response.text
    reply = from_http(response.headers, response.content, max_bytes=1 << 24)
    return reply, msgspec.json.decode(reply.data or b"", type=ToolsCompleted)


def edit(call_id: str, old: str, new: str) -> ToolCall:
    return ToolCall(
        id=call_id, name="edit_file", arguments={"path": "README.md", "old_text": old, "new_text": new}
    )


async def test_a_turn_of_calls_is_answered_with_results_in_order(make_settings) -> None:
    calls = [
        ToolCall(id="toolu_1", name="read_file", arguments={"path": "docs/guide.txt", "limit": 1}),
        ToolCall(id="toolu_2", name="git_log", arguments={"max_count": 1}),
        ToolCall(id="toolu_3", name="nope", arguments={}),
    ]
    async with tools_server(make_settings) as server:
        reply, completed = await deliver(server, request_event("conv-1", calls))
    assert reply.type == TOOLS_COMPLETED
    assert reply.extensions["conversationid"] == "conv-1"
    assert reply.source == "/victor/tools"
    assert (completed.conversation_id, completed.turn) == ("conv-1", 3)
    assert [(r.id, r.name, r.is_error) for r in completed.results] == [
        ("toolu_1", "read_file", False),
        ("toolu_2", "git_log", False),
        ("toolu_3", "nope", True),
    ]
    assert completed.results[0].content == "1\tline one\n[2 more lines; read on with offset=2]"
    assert completed.results[1].content.endswith("Ada Add the app\n")
    assert completed.results[2].error == "unknown_tool"


async def test_redelivery_returns_the_stored_reply(make_settings) -> None:
    async with tools_server(make_settings) as server:
        event = request_event("conv-2", [edit("toolu_1", "# Demo", "# Demo!")])
        first, _ = await deliver(server, event)
        again, _ = await deliver(server, event)
        text = (server.workspace / "README.md").read_text()
    assert again.id == first.id
    assert text.startswith("# Demo!\n")


async def test_a_write_is_not_run_again_when_the_reply_was_lost(make_settings) -> None:
    """The same turn re-sent under a new event id (its stored reply gone): results come from the journal."""
    async with tools_server(make_settings) as server:
        calls = [
            edit("toolu_1", "# Demo", "# Demo!"),
            ToolCall(id="toolu_2", name="read_file", arguments={"path": "README.md", "limit": 1}),
        ]
        _, first = await deliver(server, request_event("conv-3", calls))
        _, second = await deliver(server, request_event("conv-3", calls))
        text = (server.workspace / "README.md").read_text()
    assert first.results[0].is_error is False
    assert msgspec.to_builtins(second.results) == msgspec.to_builtins(first.results)
    assert text.startswith("# Demo!\n")
    assert not text.startswith("# Demo!!")


async def test_a_write_claimed_by_a_crashed_delivery_is_reported_interrupted(make_settings, services) -> None:
    connection = await asyncpg.connect(services.database_url)
    try:
        await connection.execute(
            "INSERT INTO tool_call_results (conversation_id, turn, call_id, name, state)"
            " VALUES ('conv-4', 3, 'toolu_1', 'edit_file', 'running')"
        )
    finally:
        await connection.close()
    async with tools_server(make_settings) as server:
        calls = [
            edit("toolu_1", "# Demo", "# Demo!"),
            ToolCall(id="toolu_2", name="read_file", arguments={"path": "README.md", "limit": 1}),
        ]
        _, completed = await deliver(server, request_event("conv-4", calls))
        text = (server.workspace / "README.md").read_text()
    assert (completed.results[0].is_error, completed.results[0].error) == (True, "interrupted")
    assert completed.results[1].is_error is False
    assert text.startswith("# Demo\n")


async def test_a_request_that_does_not_fit_is_rejected_with_422(make_settings) -> None:
    async with tools_server(make_settings) as server:
        bad: dict[str, Any] = {"conversation_id": "c", "turn": "three", "calls": []}
        headers, body = to_binary(new_event(TOOLS_REQUESTED, "/victor/chat", bad))
        response = await server.client.post("/", headers=headers, content=body)
    assert response.status_code == 422
    assert "$.turn" in response.json()["detail"]
