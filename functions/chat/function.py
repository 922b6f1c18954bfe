"""The chat function, declared once: its events, its route table, its provider check, its lifecycle."""

from __future__ import annotations

import os
from typing import Any

from common.function import FunctionSpec, Route
from common.openai_api import ModelList, openai_refusal
from common.probes import Unconfigured
from common.runtime import Runtime
from eventing.schemas.chat import CHAT_REQUESTED, CONVERSATION_ID
from eventing.schemas.tools import TOOLS_COMPLETED
from functions.chat.conversation_store import ConversationView
from functions.chat.handlers import (
    ChatBody,
    get_conversation,
    on_chat_requested,
    on_tools_completed,
    post_chat,
)
from functions.chat.openai_api import CompletionsBody, get_models, post_completions
from functions.chat.providers import build_provider
from functions.chat.service import ChatLoop, ChatState
from functions.chat.settings import UNCONFIGURED_MESSAGE, ChatSettings, load_chat_settings

ROUTES = [
    Route(
        "POST",
        "/v1/chat",
        post_chat,
        ChatBody,
        summary="Send a message; JSON answer, or Server-Sent Events with stream: true",
    ),
    Route(
        "GET",
        "/v1/conversations/{conversation_id}",
        get_conversation,
        returns=ConversationView,
        summary="A stored conversation",
    ),
    Route(
        "POST",
        "/v1/chat/completions",
        post_completions,
        CompletionsBody,
        summary="OpenAI-compatible chat completions; model `victor` runs the agent loop",
        refusals=openai_refusal,
    ),
    Route(
        "GET",
        "/v1/models",
        get_models,
        returns=ModelList,
        summary="OpenAI-compatible model list: `victor`",
        refusals=openai_refusal,
    ),
]


def build_function(chat_settings: ChatSettings | None = None) -> FunctionSpec:
    """The chat function; chat settings default to the process environment, read at start."""

    async def start(runtime: Runtime[ChatState]) -> None:
        chat = chat_settings or load_chat_settings(os.environ, runtime.settings)
        runtime.state.loop = ChatLoop(runtime, chat, build_provider(runtime.settings, chat))

    async def stop(runtime: Runtime[ChatState]) -> None:
        loop = runtime.state.loop
        if loop is not None and loop.provider is not None:
            await loop.provider.close()

    async def provider_check(runtime: Runtime[Any]) -> None:
        loop = runtime.state.loop
        if loop is None or loop.provider is None:
            raise Unconfigured(UNCONFIGURED_MESSAGE)

    return FunctionSpec(
        name="chat",
        event_handlers={CHAT_REQUESTED: on_chat_requested, TOOLS_COMPLETED: on_tools_completed},
        routes=ROUTES,
        requires=("postgres",),
        checks={"provider": provider_check},
        reports=("redis", "postgres", "provider"),
        propagates=(CONVERSATION_ID,),
        state=ChatState,
        start=start,
        stop=stop,
    )


FUNCTION = build_function()
