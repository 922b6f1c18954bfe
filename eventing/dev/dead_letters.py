"""The dead-letter sink of `victor dev`: the local stand-in for the `victor-dead-letters` Service.

On a cluster the Broker's deadLetterSink is Knative's event-display, which
logs every event that exhausted its retries. Locally `victor dev` serves this
small receiver inside its own process and prints one JSON log line per dead
letter (type, id, source, the subscriber that failed and how, as fields and in
one readable message), so a function that is down or rejecting events is
visible in the same terminal, and the log stays JSON like the functions' own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from common.cloudevents import CloudEventError, from_http
from common.logging import JsonFormatter

# The Knative Service name the Broker's deadLetterSink refers to in knative/base.
SERVICE_NAME = "victor-dead-letters"
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
LOGGER = "victor.dead_letters"
# Knative caps knativeerrordata; the display shows at most this much of it.
ERROR_DATA_SHOWN = 1024
_FORMATTER = JsonFormatter()


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
