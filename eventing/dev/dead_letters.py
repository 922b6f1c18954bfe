"""The dead-letter sink of `victor dev`: the local stand-in for the `victor-dead-letters` Service.

On a cluster the Broker's deadLetterSink is Knative's event-display, which
logs every event that exhausted its retries. Locally `victor dev` serves this
small receiver inside its own process and prints one line per dead letter
(type, id, the subscriber that failed and how), so a function that is down or
rejecting events is visible in the same terminal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from common.cloudevents import CloudEventError, from_http

# The Knative Service name the Broker's deadLetterSink refers to in knative/base.
SERVICE_NAME = "victor-dead-letters"
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


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
                self.say(f"dead letter that is not a valid CloudEvent: {exc.message}")
            else:
                self.received += 1
                ext = event.extensions
                self.say(
                    f"dead letter {event.type} id={event.id} source={event.source}: "
                    f"{ext.get('knativeerrordest', '?')} answered {ext.get('knativeerrorcode', '?')}"
                )
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
