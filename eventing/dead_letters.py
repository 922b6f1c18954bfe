"""The dead-letter sink: the `victor-dead-letters` Service on a cluster and the one in `victor dev`.

Events that exhausted their retries reach it (with Knative's `knativeerrordest`,
`knativeerrorcode` and `knativeerrordata` extensions). It answers 202, prints one JSON
log line per dead letter (type, id, source, the subscriber that failed and how, as fields
and in one readable message), and counts them in `victor_dead_letters_total{type}` on
`GET /metrics`, which is what the VictorDeadLetters alert reads on a cluster, where the
local broker's delivery metrics do not exist. `victor serve dead-letters` runs it alone
(as the Knative Service does); `victor dev` serves it inside its own process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter

from common import metrics
from common.cloudevents import CloudEventError, from_http
from common.logging import JsonFormatter
from common.settings import Settings
from eventing.schemas import chat, embeddings, health, tools
from eventing.schemas.event_type import EventType

# The Knative Service name the Broker's deadLetterSink refers to in knative/base.
SERVICE_NAME = "victor-dead-letters"
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
LOGGER = "victor.dead_letters"
# Knative caps knativeerrordata; the display shows at most this much of it.
ERROR_DATA_SHOWN = 1024
_FORMATTER = JsonFormatter()
# The `type` label is one of Victor's event types, or "other": a sender cannot grow the series.
KNOWN_TYPES = frozenset(
    value.name
    for module in (chat, embeddings, health, tools)
    for value in vars(module).values()
    if isinstance(value, EventType)
)
dead_letters = Counter(
    "victor_dead_letters_total",
    "Events received by the dead-letter sink (they exhausted their retries), per event type",
    ["type"],
    registry=metrics.REGISTRY,
)
for _type in (*KNOWN_TYPES, "other"):  # from 0: the alert sees the first dead letter as an increase
    dead_letters.labels(_type)
_PROBES = ("/health/live", "/health/ready", "/health/startup")


def log_line(level: int, message: str, **fields: Any) -> str:
    """One JSON log line, formatted exactly as the functions' records are."""
    record = logging.LogRecord(LOGGER, level, __file__, 0, message, None, None)
    record.__dict__.update(fields)
    return _FORMATTER.format(record)


class DeadLetterDisplay:
    """ASGI app: answers every CloudEvent with 202 and reports it through `say(line)`."""

    def __init__(self, say: Callable[[str], None], max_bytes: int = 4 * 1024 * 1024) -> None:
        self.say = say
        self.max_bytes = max_bytes
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > self.max_bytes:
                break
        if scope["method"] == "GET" and (scope["path"] == "/metrics" or scope["path"] in _PROBES):
            await self._answer_get(scope["path"], send)
            return
        status = 202
        if scope["method"] != "POST":
            status = 405
        else:
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            try:
                event = from_http(headers, bytes(body), max_bytes=self.max_bytes)
            except CloudEventError as exc:
                status = exc.status
                self.say(
                    log_line(logging.ERROR, f"dead letter that is not a valid CloudEvent: {exc.message}")
                )
            else:
                self.received += 1
                dead_letters.labels(event.type if event.type in KNOWN_TYPES else "other").inc()
                ext = event.extensions
                destination, code = ext.get("knativeerrordest", "?"), ext.get("knativeerrorcode", "?")
                self.say(
                    log_line(
                        logging.WARNING,
                        f"dead letter {event.type} id={event.id} source={event.source}: "
                        f"{destination} answered {code}",
                        event_id=event.id,
                        type=event.type,
                        source=event.source,
                        knativeerrordest=destination,
                        knativeerrorcode=code,
                        knativeerrordata=str(ext.get("knativeerrordata", ""))[:ERROR_DATA_SHOWN],
                    )
                )
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _answer_get(path: str, send: Send) -> None:
        """`/metrics` (the Prometheus exposition) or a probe (always ready: the sink needs nothing)."""
        if path == "/metrics":
            body, content_type = metrics.exposition()
        else:
            body, content_type = b'{"status":"ok"}', "application/json"
        headers = [(b"content-type", content_type.encode("latin-1"))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create(settings: Settings) -> DeadLetterDisplay:
    """The sink as `victor serve dead-letters` runs it: its lines go to standard output."""

    def say(line: str) -> None:
        print(line, flush=True)

    return DeadLetterDisplay(say, max_bytes=settings.max_event_bytes)
