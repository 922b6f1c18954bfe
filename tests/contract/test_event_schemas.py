"""Every event type keeps its public name and is bound to its payload Struct in one place."""

from __future__ import annotations

from eventing.schemas import chat, embeddings, health, tools
from eventing.schemas.event_type import EventType


def test_each_event_type_name_is_bound_to_its_payload_struct() -> None:
    bound = {
        event.name: event.payload
        for module in (chat, tools, embeddings, health)
        for event in vars(module).values()
        if isinstance(event, EventType)
    }
    assert bound == {
        "ai.victor.chat.requested": chat.ChatRequested,
        "ai.victor.chat.completed": chat.ChatCompleted,
        "ai.victor.chat.failed": chat.ChatFailed,
        "ai.victor.tools.requested": tools.ToolsRequested,
        "ai.victor.tools.completed": tools.ToolsCompleted,
        "ai.victor.embeddings.requested": embeddings.EmbeddingsRequested,
        "ai.victor.embeddings.completed": embeddings.EmbeddingsCompleted,
        "ai.victor.index.requested": embeddings.IndexRequested,
        "ai.victor.index.completed": embeddings.IndexCompleted,
        "ai.victor.index.progress": embeddings.IndexProgress,
        "ai.victor.search.requested": embeddings.SearchRequested,
        "ai.victor.search.completed": embeddings.SearchCompleted,
        "dev.knative.sources.ping": None,
        "ai.victor.health.reported": health.HealthReported,
    }


def test_the_string_constants_are_the_bound_names() -> None:
    assert tools.TOOLS_REQUESTED == tools.TOOLS_REQUESTED_EVENT.name == "ai.victor.tools.requested"
    assert chat.CHAT_COMPLETED == chat.CHAT_COMPLETED_EVENT.name == "ai.victor.chat.completed"
    assert health.PING == health.PING_EVENT.name == "dev.knative.sources.ping"
