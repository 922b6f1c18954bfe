"""The local Knative Broker data plane: ingress, a durable queue on Redis, one dispatcher per Trigger.

Accepted events are appended to one Redis stream. Each Trigger owns a consumer
group on that stream (as each Trigger owns a consumer group in Knative's Kafka
broker), so every Trigger sees every event once, evaluates its filter, and
acknowledges an entry only when its delivery is settled: delivered (and any
reply appended to the stream), dead-lettered, or given up. An entry not yet
acknowledged when the broker stops stays in the group's pending list and is
delivered again by the next broker on the same Redis: at-least-once.

As in Knative's broker, the ingress decrements `knativebrokerttl` (255 when
absent) and refuses an event whose TTL is spent; subscribers never see the TTL;
a reply re-enters with its original's TTL, and one refused (or that Redis will
not store within the delivery's retries) fails the delivery, which then goes
to the dead-letter sink. Each entry also keeps the headers Knative passes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec
import redis.asyncio as redis
from opentelemetry import trace as trace_api
from opentelemetry.trace import SpanKind, StatusCode, get_current_span
from prometheus_client import Counter, Gauge, Histogram
from redis.exceptions import RedisError, ResponseError

from common import metrics, tracing
from common.answers import Answer, Refusal, error_answer, refusal_answer, refusal_body
from common.cloudevents import INT32_RANGE, CloudEvent, CloudEventError, from_http, now_rfc3339
from common.logging import event_id, event_traceparent
from eventing.broker.delivery import (
    Attempt,
    DeliveryResult,
    DeliverySpec,
    SubscriberClient,
    dead_letter,
    deliver,
    pass_through_headers,
    retrying,
)
from eventing.broker.settings import BrokerSettings
from eventing.broker.triggers import LOCAL_DEAD_LETTER_SINK, BrokerConfig, Trigger

log = logging.getLogger(__name__)

TTL = "knativebrokerttl"
ARRIVAL_TIME = "knativearrivaltime"
DEFAULT_TTL = 255
# Knative reads the TTL with the CloudEvents SDK's ParseInteger: a decimal number (strconv.ParseFloat),
# truncated to int32; anything else counts as no TTL.
_TTL_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# The header naming the Trigger's namespace on every delivery (Knative's apis.KnNamespaceHeader).
KN_NAMESPACE = "kn-namespace"
GROUP_PREFIX = "trigger:"
DEAD_LETTERS_KEPT = 100_000
_REDIS_RETRY_SECONDS = 1.0
_TRIM_INTERVAL_SECONDS = 5.0
_BLOCK_MS = 1000
_FIELD = b"e"
_HEADERS_FIELD = b"h"
# Beside the event, each entry keeps the trace context of the span that accepted it (the ingress
# request or the delivery whose reply it is), so its deliveries continue that trace.
_TRACE_FIELDS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}
T = TypeVar("T")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CloudEvent)
_headers_decoder = msgspec.msgpack.Decoder(dict[str, str])

broker_events = Counter(
    "victor_broker_events_total",
    "Events at the local broker's ingress and replies re-entering it, per outcome",
    ["broker", "outcome"],
    registry=metrics.REGISTRY,
)
deliveries = Counter(
    "victor_broker_deliveries_total",
    "Settled deliveries per Trigger and outcome (delivered, dead_lettered, failed)",
    ["trigger", "outcome"],
    registry=metrics.REGISTRY,
)
delivery_duration = Histogram(
    "victor_broker_delivery_duration_seconds",
    "From the first attempt to the settled outcome, retries included, per Trigger",
    ["trigger"],
    buckets=metrics.LATENCY_BUCKETS,
    registry=metrics.REGISTRY,
)
trigger_ready = Gauge(
    "victor_broker_trigger_ready",
    "1 per Trigger the broker serves; 0 per Trigger Knative would keep not ready (subscriber has no URL)",
    ["trigger"],
    registry=metrics.REGISTRY,
)


class Coalescer(Generic[T]):
    """Hands every item submitted while a flush is in flight to the next flush, in one call.

    Under load many ingress requests (or settled deliveries) wait on Redis at
    once; one pipelined round trip for all of them costs far less than one each.
    `submit` returns when the flush holding its item succeeded, and raises what it raised.
    """

    def __init__(self, flush: Callable[[list[T]], Awaitable[None]]) -> None:
        self._flush = flush
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if not self._running:
            self._running = True
            self._task = asyncio.create_task(self._drain(), name="redis batch")
        await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._flush([item for item, _ in batch])
                except Exception as exc:  # every waiter learns the outcome of its own flush
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._running = False


def _stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def broker_ttl(event: CloudEvent) -> int | None:
    """The event's knativebrokerttl as Knative reads it; None when absent or not a number in int32 range."""
    text = event.extensions.get(TTL)
    if text is None or not _TTL_NUMBER.fullmatch(text):
        return None
    value = float(text)
    if not INT32_RANGE[0] <= value <= INT32_RANGE[1]:
        return None
    return int(value)  # toward zero, as Go's int32(f)


def admitted(event: CloudEvent) -> CloudEvent:
    """The event stamped as Knative's ingress stamps it; `CloudEventError` (400) when its TTL is spent.

    Knative's TTLDefaulter: no TTL (or one that is not a number) becomes 255; any other is decremented
    (never below 0); an event whose TTL is then 0 is refused, so a reply loop ends at the ingress.
    """
    ttl = broker_ttl(event)
    ttl = DEFAULT_TTL if ttl is None else max(ttl - 1, 0)
    if ttl <= 0:
        raise CloudEventError(
            400,
            f"event {event.id} has {TTL} {event.extensions.get(TTL)!r}: it went through the broker "
            "too many times (a reply loop?)",
            "ttl_exhausted",
        )
    return event.with_extensions(**{ARRIVAL_TIME: now_rfc3339(), TTL: str(ttl)})


@dataclasses.dataclass(frozen=True)
class StoredEvent:
    """One stream entry: the event and the request headers Knative passes on to its deliveries."""

    event: CloudEvent
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The trace context of the span that accepted it (empty when stored untraced).
    trace: Mapping[str, str] = dataclasses.field(default_factory=dict)


class EventStream:
    """The Redis stream of accepted events and the Triggers' consumer groups on it."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._appends: Coalescer[dict[bytes, bytes]] = Coalescer(self._append_all)
        self._acks: dict[str, Coalescer[str]] = {}

    async def append(self, event: CloudEvent, headers: Mapping[str, str] | None = None) -> None:
        """Add an event (with the headers its deliveries carry and the current trace context); durable
        in Redis once this returns."""
        fields = {_FIELD: _encoder.encode(event)}
        if headers:
            fields[_HEADERS_FIELD] = _encoder.encode(dict(headers))
        fields.update({key.encode(): value.encode() for key, value in tracing.current_headers().items()})
        await self._appends.submit(fields)

    async def _append_all(self, entries: list[dict[bytes, bytes]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for fields in entries:
                pipe.xadd(self.key, fields)  # type: ignore[arg-type]
            await pipe.execute()

    async def ensure_group(self, group: str, start: str = "$") -> None:
        """Create the group at `start` ($, the end: a new Trigger sees events from now on), or keep it."""
        try:
            await self.client.xgroup_create(self.key, group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def groups(self) -> list[dict[str, Any]]:
        try:
            return list(await self.client.xinfo_groups(self.key))
        except ResponseError:  # the stream does not exist yet
            return []

    async def drop_groups_except(self, keep: set[str]) -> list[str]:
        """Remove the consumer groups of Triggers no longer in the manifests (their backlog goes too)."""
        dropped = []
        for group in await self.groups():
            name = _text(group["name"])
            if name.startswith(GROUP_PREFIX) and name not in keep:
                await self.client.xgroup_destroy(self.key, name)
                dropped.append(name)
        return dropped

    @staticmethod
    def _decode(entries: Sequence[Any]) -> list[tuple[str, StoredEvent | None]]:
        decoded: list[tuple[str, StoredEvent | None]] = []
        for entry_id, fields in entries:
            fields = fields or {}
            raw = fields.get(_FIELD)
            stored = None
            if raw is not None:
                try:
                    headers = fields.get(_HEADERS_FIELD)
                    stored = StoredEvent(
                        _decoder.decode(raw),
                        _headers_decoder.decode(headers) if headers else {},
                        {name: _text(fields[key]) for key, name in _TRACE_FIELDS.items() if key in fields},
                    )
                except msgspec.DecodeError:
                    log.error("stream entry %s is not an event; skipping it", _text(entry_id))
            decoded.append((_text(entry_id), stored))
        return decoded

    async def read_new(
        self, group: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, StoredEvent | None]]:
        reply: Any = await self.client.xreadgroup(
            group, consumer, {self.key: ">"}, count=count, block=block_ms
        )
        if not reply:
            return []
        return self._decode(reply[0][1])

    async def claim_pending(
        self, group: str, consumer: str, start: str, count: int
    ) -> tuple[str, list[tuple[str, StoredEvent | None]]]:
        """Take over pending entries of any consumer of `group` (a stopped broker's included)."""
        reply = await self.client.xautoclaim(self.key, group, consumer, 0, start_id=start, count=count)
        return _text(reply[0]), self._decode([entry for entry in reply[1] if entry is not None])

    @property
    def dead_letters_key(self) -> str:
        return f"{self.key}:dead-letters"

    async def keep_dead_letter(self, event: CloudEvent) -> None:
        """Keep a dead letter in the broker's own stream (bounded, the oldest dropped first)."""
        await self.client.xadd(
            self.dead_letters_key,
            {_FIELD: _encoder.encode(event)},
            maxlen=DEAD_LETTERS_KEPT,
            approximate=True,
        )

    async def ack(self, group: str, *entry_ids: str) -> None:
        """Acknowledge entries of `group` (batched with concurrent acknowledgements of the group)."""
        if not entry_ids:
            return
        if len(entry_ids) > 1:
            await self.client.xack(self.key, group, *entry_ids)
            return
        coalescer = self._acks.get(group)
        if coalescer is None:
            coalescer = self._acks[group] = Coalescer(lambda ids: self._ack_all(group, ids))
        await coalescer.submit(entry_ids[0])

    async def _ack_all(self, group: str, entry_ids: list[str]) -> None:
        await self.client.xack(self.key, group, *entry_ids)

    async def trim(self) -> None:
        """Drop entries every group has settled: below each group's oldest pending or last-read entry."""
        groups = await self.groups()
        if not groups:
            return
        floor: tuple[int, int] | None = None
        for group in groups:
            if int(group["pending"]):
                summary = await self.client.xpending(self.key, _text(group["name"]))
                candidate = _stream_id(summary["min"])
            else:
                candidate = _stream_id(group["last-delivered-id"])
            floor = candidate if floor is None else min(floor, candidate)
        if floor is not None and floor > (0, 0):
            await self.client.xtrim(self.key, minid=f"{floor[0]}-{floor[1]}", approximate=False)


class TriggerDispatcher:
    """Reads one Trigger's consumer group and delivers matching events with bounded concurrency."""

    def __init__(self, broker: Broker, trigger: Trigger, delivery: DeliverySpec) -> None:
        self.broker = broker
        self.trigger = trigger
        self.delivery = delivery
        self.group = GROUP_PREFIX + trigger.name
        self.slots = asyncio.Semaphore(broker.settings.workers)
        self.in_flight: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Resume pending deliveries, then follow the stream until cancelled; survives Redis outages."""
        stream = self.broker.stream
        settings = self.broker.settings
        recover = True
        while True:
            try:
                if recover:
                    await self._recover()
                    recover = False
                entries = await stream.read_new(self.group, settings.consumer, settings.batch, _BLOCK_MS)
                await self._dispatch(entries)
            except (RedisError, OSError) as exc:
                log.warning(
                    "trigger %s: Redis unavailable (%s); retrying", self.trigger.name, type(exc).__name__
                )
                recover = True  # entries whose ack failed are pending again
                await asyncio.sleep(_REDIS_RETRY_SECONDS)
                if "NOGROUP" in str(exc):  # Redis came back without its data: every entry now is new
                    with contextlib.suppress(RedisError, OSError):
                        await stream.ensure_group(self.group, start="0")
            except Exception:  # a dispatcher that dies silently would stop a Trigger for good
                log.exception("trigger %s: dispatching failed; retrying", self.trigger.name)
                recover = True
                await asyncio.sleep(_REDIS_RETRY_SECONDS)

    async def _recover(self) -> None:
        stream = self.broker.stream
        start = "0-0"
        while True:
            start, entries = await stream.claim_pending(
                self.group, self.broker.settings.consumer, start, self.broker.settings.batch
            )
            fresh = [(entry_id, stored) for entry_id, stored in entries if entry_id not in self.in_flight]
            if fresh:
                log.info("trigger %s: resuming %d pending deliveries", self.trigger.name, len(fresh))
            await self._dispatch(fresh)
            if start == "0-0":
                return

    async def _dispatch(self, entries: Sequence[tuple[str, StoredEvent | None]]) -> None:
        skipped = []
        for entry_id, stored in entries:
            if stored is None or not self.trigger.filter.matches(stored.event.attributes()):
                skipped.append(entry_id)
                continue
            await self.slots.acquire()  # back-pressure: stop reading while every worker is busy
            self.in_flight.add(entry_id)
            task = asyncio.create_task(self._settle(entry_id, stored), name=f"deliver {self.trigger.name}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        await self.broker.stream.ack(self.group, *skipped)

    async def _settle(self, entry_id: str, stored: StoredEvent) -> None:
        # Runs in its own task (its own context): every line about this delivery names the event
        # and carries its trace.
        event = stored.event
        event_id.set(event.id)
        traceparent = event.extensions.get("traceparent")
        event_traceparent.set(traceparent if isinstance(traceparent, str) else None)
        trigger = self.trigger.name
        started = time.perf_counter()
        # Knative's filter sends the request's pass-through headers and the Trigger's namespace.
        headers = {**stored.headers, KN_NAMESPACE: self.trigger.namespace}
        # The delivery span continues the trace of the span that accepted the entry (an entry
        # stored without one, by an older broker or untraced, continues the event's own trace).
        parent = (
            tracing.context_from_headers(stored.trace) if stored.trace else tracing.context_from_event(event)
        )
        span = tracing.tracer(__name__).start_span(
            f"deliver {trigger}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "knative",
                "messaging.operation.type": "process",
                "messaging.destination.name": trigger,
                "cloudevents.event_id": event.id,
                "cloudevents.event_type": event.type,
                "url.full": self.trigger.subscriber_url,
            },
        )
        try:
            try:
                with trace_api.use_span(span, end_on_exit=True):
                    outcome = await self._deliver(event, headers)
                    span.set_attribute("victor.delivery.outcome", outcome)
                    if outcome != "delivered":
                        span.set_status(StatusCode.ERROR, outcome)
            except Exception as exc:  # never left pending: a stuck entry would also stop trimming for good
                log.exception("trigger %s: delivering event %s failed", trigger, event.id)
                failure = Attempt(500, f"broker error: {type(exc).__name__}".encode())
                outcome = await self._give_up(
                    event, DeliveryResult(self.trigger.subscriber_url, failure, 1), headers
                )
            await self._until_stored(lambda: self.broker.stream.ack(self.group, entry_id))
            deliveries.labels(trigger, outcome).inc()
            delivery_duration.labels(trigger).observe(time.perf_counter() - started)
        except Exception:
            log.exception("trigger %s: settling event %s failed; it stays pending", trigger, event.id)
        finally:
            self.in_flight.discard(entry_id)
            self.slots.release()

    async def _deliver(self, event: CloudEvent, headers: Mapping[str, str]) -> str:
        """Deliver (the TTL is the broker's own: subscribers never see it), forward any reply, give up."""
        result = await deliver(
            self.broker.http,
            self.trigger.subscriber_url,
            event.with_extensions(**{TTL: None}),
            self.delivery,
            max_reply_bytes=self.broker.max_event_bytes,
            credentials=self.broker.credentials(),
            headers=headers,
        )
        get_current_span().set_attributes(
            {"http.response.status_code": result.last.status, "victor.delivery.attempts": result.attempts}
        )
        if result.succeeded and result.last.reply is not None:
            result = await self._forward_reply(event, result)
        if result.succeeded:
            return "delivered"
        return await self._give_up(event, result, headers)

    async def _forward_reply(self, original: CloudEvent, result: DeliveryResult) -> DeliveryResult:
        """Store the reply as Knative sends it to the broker's ingress: with the original's TTL, retried
        as the delivery spec says; the failure it ends in (TTL spent: 400, Redis: 503) fails the delivery."""
        reply = result.last.reply
        assert reply is not None
        reply = reply.with_extensions(**{TTL: original.extensions.get(TTL)})
        headers = {**result.last.reply_headers, KN_NAMESPACE: self.trigger.namespace}

        async def store() -> Attempt:
            try:
                await self.broker.accept(reply, headers)
            except Refusal as exc:
                return Attempt(exc.status, msgspec.json.encode(refusal_body(exc)))
            except (RedisError, OSError):
                return Attempt(503, msgspec.json.encode(refusal_body(_REDIS_DOWN)))
            return Attempt(202, b"")

        # The reply's own span, under the delivery that brought it: its deliveries continue from here.
        with tracing.tracer(__name__).start_as_current_span(
            f"reply {reply.type}",
            kind=SpanKind.PRODUCER,
            attributes={"cloudevents.event_id": reply.id, "cloudevents.event_type": reply.type},
        ):
            forwarded = await retrying(self.delivery, self.broker.reply_url, store)
        if forwarded.succeeded:
            broker_events.labels(self.broker.settings.ingress_path, "replied").inc()
            return result
        outcome = "ttl_exhausted" if forwarded.last.status == 400 else "reply_failed"
        broker_events.labels(self.broker.settings.ingress_path, outcome).inc()
        log.warning(
            "trigger %s: the reply %s (%s) to event %s was refused with %d",
            self.trigger.name,
            reply.id,
            reply.type,
            original.id,
            forwarded.last.status,
        )
        return forwarded

    async def _until_stored(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run a Redis write until it succeeds: a settled delivery is never left pending until a restart."""
        while True:
            try:
                await step()
                return
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    return  # Redis lost the stream: the entry is gone with it
                log.warning("trigger %s: Redis refused a write (%s); retrying", self.trigger.name, exc)
            except (RedisError, OSError) as exc:
                log.warning(
                    "trigger %s: Redis unavailable (%s); retrying", self.trigger.name, type(exc).__name__
                )
            await asyncio.sleep(_REDIS_RETRY_SECONDS)

    async def _give_up(self, event: CloudEvent, result: DeliveryResult, headers: Mapping[str, str]) -> str:
        sink = self.delivery.dead_letter_url
        message = (
            f"trigger {self.trigger.name}: event {event.id} ({event.type}) failed after "
            f"{result.attempts} attempt(s) to {result.url} with status {result.last.status}"
        )
        if sink is None:
            log.warning("%s; no dead-letter sink, dropping it", message)
            return "failed"
        if sink == LOCAL_DEAD_LETTER_SINK:
            letter = dead_letter(event, result)
            await self._until_stored(lambda: self.broker.stream.keep_dead_letter(letter))
            log.warning("%s; kept in %s", message, self.broker.stream.dead_letters_key)
            return "dead_lettered"
        sent = await deliver(
            self.broker.http,
            sink,
            dead_letter(event, result),
            self.delivery,
            max_reply_bytes=self.broker.max_event_bytes,
            credentials=self.broker.credentials(),
            headers=headers,
        )
        if not sent.succeeded:
            log.error(
                "%s; the dead-letter sink %s answered %d too, dropping it", message, sink, sent.last.status
            )
            return "failed"
        log.info("%s; sent to the dead-letter sink", message)
        return "dead_lettered"


_REDIS_DOWN = Refusal.unavailable("the broker cannot store events right now (Redis is down); retry")


class Broker:
    """One Broker: accepts events into its stream and runs a dispatcher per Trigger."""

    def __init__(
        self,
        settings: BrokerSettings,
        config: BrokerConfig | None,
        triggers: Sequence[Trigger],
        client: redis.Redis,
        *,
        max_event_bytes: int,
        credentials: Callable[[], Mapping[str, str]] = dict,
        reply_url: str | None = None,
    ) -> None:
        self.settings = settings
        # Where replies go, as knativeerrordest names it when one is refused: the broker's own ingress.
        self.reply_url = reply_url or settings.ingress_path
        # Headers that authenticate each delivery to its subscriber (VICTOR_EVENT_AUTH), made per delivery.
        self.credentials = credentials
        self.config = config
        self.triggers = list(triggers)
        self.client = client
        self.stream = EventStream(client, settings.stream)
        self.max_event_bytes = max_event_bytes
        self.http = SubscriberClient(max_idle_per_origin=settings.workers * max(1, len(self.triggers)))
        self.dispatchers = [TriggerDispatcher(self, t, self._delivery_of(t)) for t in self.triggers]
        self._tasks: list[asyncio.Task[None]] = []

    def _delivery_of(self, trigger: Trigger) -> DeliverySpec:
        """The Trigger's delivery spec, else the Broker's (Knative's fallback).

        No time limit per attempt unless `timeout` (or VICTOR_BROKER_TIMEOUT) sets one, as in Knative;
        `format` is the Trigger's own (Knative's filter reads only the Trigger's).
        """
        spec = trigger.delivery or (self.config.delivery if self.config else None) or DeliverySpec()
        timeout = spec.timeout if spec.timeout is not None else self.settings.default_timeout
        event_format = trigger.delivery.format if trigger.delivery else None
        return dataclasses.replace(spec, timeout=timeout, format=event_format)

    def serves(self, namespace: str, name: str) -> bool:
        return namespace == self.settings.namespace and name == self.settings.name

    async def start(self) -> None:
        """Create the Triggers' consumer groups and start dispatching (pending entries first)."""
        groups = {d.group for d in self.dispatchers}
        for group in sorted(groups):
            await self.stream.ensure_group(group)
        for name in await self.stream.drop_groups_except(groups):
            log.warning("dropped consumer group %s: its Trigger is no longer in the manifests", name)
        for dispatcher in self.dispatchers:
            self._tasks.append(
                asyncio.create_task(dispatcher.run(), name=f"dispatch {dispatcher.trigger.name}")
            )
        self._tasks.append(asyncio.create_task(self._trim_forever(), name="trim broker stream"))
        log.info(
            "broker %s serving %d trigger(s): %s",
            self.settings.ingress_path,
            len(self.triggers),
            ", ".join(f"{t.name} -> {t.subscriber_url}" for t in self.triggers) or "none",
        )

    async def stop(self) -> None:
        """Stop reading and cancel deliveries in flight; they stay pending for the next start."""
        in_flight = [task for d in self.dispatchers for task in d.tasks]
        for task in [*self._tasks, *in_flight]:
            task.cancel()
        await asyncio.gather(*self._tasks, *in_flight, return_exceptions=True)
        self._tasks.clear()
        await self.http.aclose()

    async def _trim_forever(self) -> None:
        while True:
            await asyncio.sleep(_TRIM_INTERVAL_SECONDS)
            try:
                await self.stream.trim()
            except (RedisError, OSError) as exc:
                log.warning("could not trim the broker stream: %s", type(exc).__name__)

    async def accept(self, event: CloudEvent, headers: Mapping[str, str] | None = None) -> None:
        """Append an event (durable once this returns), stamped as Knative's ingress stamps it.

        Raises `CloudEventError` (400) when its TTL is spent, Redis errors when it cannot be stored.
        """
        await self.stream.append(admitted(event), headers)

    async def ingress(self, namespace: str, name: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """`POST /{namespace}/{name}`: 202 once the event is durable; 400/404/413/415/503 with a JSON body."""
        if not self.serves(namespace, name):
            broker_events.labels(self.settings.ingress_path, "unknown_broker").inc()
            return error_answer(
                404,
                "unknown_broker",
                f"no broker {namespace}/{name} here; send events to {self.settings.ingress_path}",
            )
        try:
            event = from_http(headers, body, max_bytes=self.max_event_bytes)
            await self.accept(event, pass_through_headers(headers))
        except CloudEventError as exc:
            outcome = "ttl_exhausted" if exc.code == "ttl_exhausted" else "invalid"
            broker_events.labels(self.settings.ingress_path, outcome).inc()
            return refusal_answer(exc)
        except (RedisError, OSError):
            broker_events.labels(self.settings.ingress_path, "unavailable").inc()
            return refusal_answer(_REDIS_DOWN)
        broker_events.labels(self.settings.ingress_path, "accepted").inc()
        return Answer(202, {}, b"")
