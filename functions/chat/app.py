"""The chat function: its spec (event handlers, routes, checks, lifecycle) and its Litestar app."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, MediaType, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Stream

from common.app import create_app
from common.function import FunctionSpec, Runtime, Unconfigured
from common.settings import Settings, get_settings
from eventing.schemas.chat import CHAT_REQUESTED
from eventing.schemas.tools import TOOLS_COMPLETED
from functions.chat.conversation_store import ConversationView
from functions.chat.handlers import (
    ChatBody,
    ChatRejected,
    ChatRun,
    failure_status,
    loop_of,
    on_chat_requested,
    on_tools_completed,
    sse_frame,
    start_chat,
)
from functions.chat.loop import ChatLoop
from functions.chat.providers import build_provider
from functions.chat.settings import UNCONFIGURED_MESSAGE, ChatSettings, load_chat_settings


# The handler's media type is the SSE one because Litestar lets it override a streamed response's own;
# the JSON answer sets its media type explicitly.
@post(
    "/v1/chat",
    status_code=200,
    media_type="text/event-stream",
    summary="Send a message; JSON answer, or Server-Sent Events with stream: true",
)
async def chat(data: ChatBody, runtime: Runtime) -> Any:
    """The final answer with the tool calls made and the usage; with `stream: true`, SSE events
    `text`, `tool_call`, `tool_result`, then `done` (the same JSON as the plain answer) or `error`."""
    try:
        run = await start_chat(runtime, data)
    except ChatRejected as exc:
        raise HTTPException(status_code=exc.status, detail=exc.message) from exc
    headers = {"x-conversation-id": run.conversation_id, "x-request-id": run.request_id}
    if data.stream:
        return Stream(
            _frames(run), media_type="text/event-stream", headers={**headers, "cache-control": "no-cache"}
        )
    final = await run.outcome()
    if final.kind != "done":
        raise HTTPException(
            status_code=failure_status(final.data), detail=str(final.data.get("error")), extra=final.data
        )
    return Response(final.data, status_code=200, media_type=MediaType.JSON, headers=headers)


async def _frames(run: ChatRun) -> AsyncIterator[bytes]:
    async for message in run.progress():
        yield sse_frame(message)


@get("/v1/conversations/{conversation_id:str}")
async def conversation(conversation_id: str, runtime: Runtime) -> ConversationView:
    """The stored conversation: messages (content blocks), requests, tool calls, LLM calls, usage."""
    view = await loop_of(runtime).conversations.view(conversation_id)
    if view is None:
        raise NotFoundException(f"conversation {conversation_id} does not exist")
    return view


def build_spec(chat_settings: ChatSettings | None = None) -> FunctionSpec:
    """The chat spec; chat settings default to the process environment, read at start."""

    async def start(runtime: Runtime) -> None:
        chat = chat_settings or load_chat_settings(os.environ, runtime.settings)
        runtime.state["loop"] = ChatLoop(runtime, chat, build_provider(runtime.settings, chat))

    async def stop(runtime: Runtime) -> None:
        loop: ChatLoop | None = runtime.state.get("loop")
        if loop is not None and loop.provider is not None:
            await loop.provider.close()

    async def provider_check(runtime: Runtime) -> None:
        loop: ChatLoop | None = runtime.state.get("loop")
        if loop is None or loop.provider is None:
            raise Unconfigured(UNCONFIGURED_MESSAGE)

    return FunctionSpec(
        name="chat",
        event_handlers={CHAT_REQUESTED: on_chat_requested, TOOLS_COMPLETED: on_tools_completed},
        routes=[chat, conversation],
        requires=("postgres",),
        checks={"provider": provider_check},
        reports=("redis", "postgres", "provider"),
        start=start,
        stop=stop,
    )


SPEC = build_spec()


def create(settings: Settings | None = None, chat_settings: ChatSettings | None = None) -> Litestar:
    """The chat app; a bad chat setting stops start-up with one line naming the variable."""
    settings = settings or get_settings()
    chat_settings = chat_settings or load_chat_settings(os.environ, settings)
    return create_app(build_spec(chat_settings), settings)
