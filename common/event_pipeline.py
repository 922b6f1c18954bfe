"""The one way a CloudEvent is handled: parse, trace, claim (idempotency), handle, record, count.

`POST /` in both serving modes (once its credentials pass) and chat's in-process
HTTP path all go through `process_event`, so every step gets the same (source, id) claim, the same
`victor_events_total` outcome and the same span, wherever it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from common import metrics, tracing
from common.answers import Answer, Refusal, refusal_answer
from common.auth import authenticate_event
from common.cloudevents import CloudEvent, from_http, to_binary
from common.logging import event_id
from common.runtime import Runtime
from common.store import store_outage

log = logging.getLogger(__name__)


def reply_answer(reply: CloudEvent | None) -> Answer:
    """202 with an empty body, or 200 with exactly one CloudEvent in binary mode."""
    if reply is None:
        return Answer(202, {}, b"")
    headers, body = to_binary(reply)
    return Answer(200, headers, body)


def oidc_audience(name: str) -> str:
    """The OIDC audience a receiver named `name` expects when neither VICTOR_OIDC_AUDIENCE nor K_SERVICE
    is set: its Knative Service's name, which the Triggers' `subscriber.audience` names."""
    return f"victor-{name}"


async def handle_event_request(runtime: Runtime[Any], headers: Mapping[str, str], body: bytes) -> Answer:
    """Authenticate (VICTOR_EVENT_AUTH), parse, de-duplicate and handle one delivered event; never raises."""
    try:
        await authenticate_event(runtime.settings, oidc_audience(runtime.spec.name), headers)
    except Refusal as exc:
        metrics.events.labels(runtime.spec.name, "unauthenticated", "rejected").inc()
        return refusal_answer(exc)
    try:
        event = from_http(headers, body, max_bytes=runtime.settings.max_event_bytes)
    except Refusal as exc:
        metrics.events.labels(runtime.spec.name, "invalid", "rejected").inc()
        return refusal_answer(exc)
    try:
        return reply_answer(await process_event(runtime, event, headers))
    except Refusal as exc:
        return refusal_answer(exc)


async def process_event(
    runtime: Runtime[Any], event: CloudEvent, headers: Mapping[str, str] | None = None
) -> CloudEvent | None:
    """Handle one event in this process: its reply (None for none), or a `Refusal` saying why not.

    The event is claimed by (source, id): a redelivery gets the stored reply and runs nothing twice.
    """
    name = runtime.spec.name
    handler = runtime.spec.event_handlers.get(event.type)
    if handler is None:
        metrics.events.labels(name, "unsupported", "rejected").inc()
        accepted = ", ".join(sorted(runtime.spec.event_handlers)) or "none"
        raise Refusal(
            400,
            f"function {name} does not handle events of type {event.type!r}; it handles: {accepted}",
            "unsupported_event_type",
        )
    token = event_id.set(event.id)
    try:
        parent = tracing.context_from_event(event, headers or {})
        with tracing.tracer(__name__).start_as_current_span(
            f"{name} {event.type}",
            context=parent,
            attributes={
                "cloudevents.event_id": event.id,
                "cloudevents.event_type": event.type,
                "cloudevents.event_source": event.source,
            },
        ):
            return await _claimed(runtime, event)
    finally:
        event_id.reset(token)


async def _claimed(runtime: Runtime[Any], event: CloudEvent) -> CloudEvent | None:
    name = runtime.spec.name
    outcome = metrics.events.labels
    try:
        claim = await runtime.processed.claim(event)
    except Exception as exc:
        refusal = store_outage(exc)
        if refusal is None:
            raise
        outcome(name, event.type, "unavailable").inc()
        log.warning("event %s not claimed: %s", event.id, refusal.message)
        raise refusal from None
    if claim.state == "done":
        outcome(name, event.type, "duplicate").inc()
        log.info("event %s from %s already handled; returning the stored reply", event.id, event.source)
        return claim.reply
    if claim.state == "running":
        outcome(name, event.type, "busy").inc()
        raise Refusal(409, f"event {event.id} is being handled; retry later", "in_progress")
    try:
        reply = await runtime.spec.event_handlers[event.type](event, runtime)
    except Refusal as exc:
        await runtime.processed.release(event)
        outcome(name, event.type, "retry" if exc.status >= 500 else "rejected").inc()
        raise
    except Exception as exc:
        await runtime.processed.release(event)
        refusal = store_outage(exc)
        if refusal is not None:  # retried by the broker once the store is back
            outcome(name, event.type, "retry").inc()
            log.warning("event %s not handled: %s", event.id, refusal.message)
            raise refusal from None
        outcome(name, event.type, "failed").inc()
        log.exception("handler for %s failed", event.type)
        raise Refusal(
            500, f"handling event {event.id} failed; it will be retried", "internal_error"
        ) from None
    if reply is not None:
        carried = {
            key: event.extensions[key]
            for key in runtime.spec.propagates
            if key in event.extensions and key not in reply.extensions
        }
        if carried:
            reply = reply.with_extensions(**carried)
        reply = tracing.with_trace(reply)
    try:
        await runtime.processed.finish(event, reply)
    except Exception as exc:  # the work is done; a redelivery may repeat it, which is the lesser harm
        if store_outage(exc) is None:
            raise
        log.warning("could not record event %s as handled: PostgreSQL is unavailable", event.id)
    outcome(name, event.type, "replied" if reply is not None else "accepted").inc()
    return reply
