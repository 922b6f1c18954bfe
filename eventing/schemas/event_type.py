"""What every event schema shares: the payload base and the type that binds a name to its payload.

Each function's events live in their own module (`eventing/schemas/chat.py`,
`tools.py`, `embeddings.py`, `health.py`), as one `EventType` per CloudEvent
type. Every payload carries a `version` so consumers can refuse payloads they
do not understand.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# Text that PostgreSQL stores (conversations, requests, tool calls): `text` and `jsonb` cannot hold
# U+0000, so a string with one is refused where it is decoded (422 naming the field), not by the store.
StoredText = Annotated[str, msgspec.Meta(pattern=r"^[^\x00]*$")]
# A conversation's step number: stored in PostgreSQL `integer` columns, so within their range.
Turn = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class Payload(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """Base of every event payload: the schema version of the payload."""

    version: int = 1


class EventType(msgspec.Struct, frozen=True):
    """A CloudEvent type name bound to its payload Struct (as a faust topic binds its value type).

    Each schema module defines one per type, `<NAME>_EVENT`, and exports its
    `name` as the plain string constant `<NAME>` (handler tables and
    `event.type` comparisons key on that string). `payload` is None for a type
    whose data Victor does not read (a PingSource's).
    """

    name: str
    payload: type[Payload] | None
