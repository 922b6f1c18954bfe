"""CloudEvent types of the agent flow, and the base of every payload.

Payload Structs live beside their domain: `eventing/health_events.py`,
`eventing/tools_events.py`, `eventing/embeddings_events.py`,
`eventing/chat_events.py`. Each carries a `version` so consumers can refuse
payloads they do not understand.
"""

from __future__ import annotations

import msgspec

CHAT_REQUESTED = "ai.victor.chat.requested"
CHAT_COMPLETED = "ai.victor.chat.completed"
CHAT_FAILED = "ai.victor.chat.failed"
TOOLS_REQUESTED = "ai.victor.tools.requested"
TOOLS_COMPLETED = "ai.victor.tools.completed"
EMBEDDINGS_REQUESTED = "ai.victor.embeddings.requested"
EMBEDDINGS_COMPLETED = "ai.victor.embeddings.completed"
INDEX_REQUESTED = "ai.victor.index.requested"
INDEX_COMPLETED = "ai.victor.index.completed"
SEARCH_REQUESTED = "ai.victor.search.requested"
SEARCH_COMPLETED = "ai.victor.search.completed"
PING = "dev.knative.sources.ping"
HEALTH_REPORTED = "ai.victor.health.reported"

# Extension attribute carrying the conversation an event belongs to.
CONVERSATION_ID = "conversationid"


class Payload(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """Base of every event payload: the schema version of the payload."""

    version: int = 1
