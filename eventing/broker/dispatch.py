"""The local Knative Broker data plane: ingress, a durable queue on Redis, one dispatcher per Trigger.

Accepted events are appended to one Redis stream. Each Trigger owns a consumer
group on that stream (as each Trigger owns a consumer group in Knative's Kafka
broker), so every Trigger sees every event once, evaluates its filter, and
acknowledges an entry only when its delivery is settled: delivered (and any
reply appended to the stream), dead-lettered, or given up. An entry not yet
acknowledged when the broker stops stays in the group's pending list and is
delivered again by the next broker on the same Redis: at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec
import redis.asyncio as redis
from opentelemetry.trace import Span, SpanKind, StatusCode
from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError, ResponseError

from common import metrics, tracing
from common.answers import Answer, error_answer
from common.cloudevents import CloudEvent, CloudEventError, from_http, now_rfc3339
from common.logging import event_id, event_traceparent
from eventing.broker.delivery import DeliveryResult, DeliverySpec, SubscriberClient, dead_letter, deliver
from eventing.broker.settings import BrokerSettings
from eventing.broker.triggers import LOCAL_DEAD_LETTER_SINK, BrokerConfig, Trigger

log = logging.getLogger(__name__)

TTL = "knativebrokerttl"
ARRIVAL_TIME = "knativearrivaltime"
DEFAULT_TTL = 255
GROUP_PREFIX = "trigger:"
DEAD_LETTERS_KEPT = 100_000
_REDIS_RETRY_SECONDS = 1.0
_TRIM_INTERVAL_SECONDS = 5.0
_BLOCK_MS = 1000
_FIELD = b"e"
# Beside the event, each entry keeps the trace context of the span that accepted it (the ingress
# request or the delivery whose reply it is), so its deliveries continue that trace.
_TRACE_FIELDS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}
T = TypeVar("T")
# An entry as read back: its id, its event (None when unreadable) and the trace context it carries.
Entry = tuple[str, CloudEvent | None, dict[str, str]]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CloudEvent)

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


class EventStream:
    """The Redis stream of accepted events and the Triggers' consumer groups on it."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._appends: Coalescer[dict[bytes, bytes]] = Coalescer(self._append_all)
        self._acks: dict[str, Coalescer[str]] = {}

    async def append(self, event: CloudEvent) -> None:
        """Add an event with the current trace context; durable in Redis once this returns."""
        fields = {_FIELD: _encoder.encode(event)}
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
    def _decode(entries: Sequence[Any]) -> list[Entry]:
        decoded: list[Entry] = []
        for entry_id, fields in entries:
            fields = fields or {}
            raw = fields.get(_FIELD)
            event = None
            if raw is not None:
                try:
                    event = _decoder.decode(raw)
                except msgspec.DecodeError:
                    log.error("stream entry %s is not an event; skipping it", _text(entry_id))
            carried = {name: _text(fields[key]) for key, name in _TRACE_FIELDS.items() if key in fields}
            decoded.append((_text(entry_id), event, carried))
        return decoded

    async def read_new(self, group: str, consumer: str, count: int, block_ms: int) -> list[Entry]:
        reply: Any = await self.client.xreadgroup(
            group, consumer, {self.key: ">"}, count=count, block=block_ms
        )
        if not reply:
            return []
        return self._decode(reply[0][1])

    async def claim_pending(
        self, group: str, consumer: str, start: str, count: int
    ) -> tuple[str, list[Entry]]:
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
            fresh = [entry for entry in entries if entry[0] not in self.in_flight]
            if fresh:
                log.info("trigger %s: resuming %d pending deliveries", self.trigger.name, len(fresh))
            await self._dispatch(fresh)
            if start == "0-0":
                return

    async def _dispatch(self, entries: Sequence[Entry]) -> None:
        skipped = []
        for entry_id, event, carried in entries:
            if event is None or not self.trigger.filter.matches(event.attributes()):
                skipped.append(entry_id)
                continue
            await self.slots.acquire()  # back-pressure: stop reading while every worker is busy
            self.in_flight.add(entry_id)
            task = asyncio.create_task(
                self._settle(entry_id, event, carried), name=f"deliver {self.trigger.name}"
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        await self.broker.stream.ack(self.group, *skipped)

    async def _settle(self, entry_id: str, event: CloudEvent, carried: Mapping[str, str]) -> None:
        # Runs in its own task (its own context): every line about this delivery names the event
        # and carries its trace.
        event_id.set(event.id)
        traceparent = event.extensions.get("traceparent")
        event_traceparent.set(traceparent if isinstance(traceparent, str) else None)
        # The delivery span continues the trace of the span that accepted the entry (an entry
        # stored without one, by an older broker, continues the event's own trace).
        parent = tracing.context_from_headers(carried) if carried else tracing.context_from_event(event)
        with tracing.tracer(__name__).start_as_current_span(
            f"deliver {self.trigger.name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "knative",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.trigger.name,
                "cloudevents.event_id": event.id,
                "cloudevents.event_type": event.type,
                "url.full": self.trigger.subscriber_url,
            },
        ) as span:
            await self._settle_traced(entry_id, event, span)

    async def _settle_traced(self, entry_id: str, event: CloudEvent, span: Span) -> None:
        trigger = self.trigger.name
        started = time.perf_counter()
        try:
            result = await deliver(
                self.broker.http,
                self.trigger.subscriber_url,
                event,
                self.delivery,
                max_reply_bytes=self.broker.max_event_bytes,
                credentials=self.broker.credentials(),
            )
            if result.succeeded:
                outcome = "delivered"
                if result.last.reply is not None:
                    await self.broker.accept_reply(event, result.last.reply)
            else:
                outcome = await self._give_up(event, result)
            span.set_attributes(
                {
                    "http.response.status_code": result.last.status,
                    "victor.delivery.attempts": result.attempts,
                    "victor.delivery.outcome": outcome,
                }
            )
            if outcome != "delivered":
                span.set_status(StatusCode.ERROR, f"{outcome} after {result.attempts} attempt(s)")
            await self.broker.stream.ack(self.group, entry_id)
            deliveries.labels(trigger, outcome).inc()
            delivery_duration.labels(trigger).observe(time.perf_counter() - started)
        except (RedisError, OSError) as exc:
            # Not acknowledged: the entry stays pending and is delivered again after recovery.
            log.warning("trigger %s: could not settle event %s: %s", trigger, event.id, type(exc).__name__)
        except Exception:
            log.exception("trigger %s: delivering event %s failed; it stays pending", trigger, event.id)
        finally:
            self.in_flight.discard(entry_id)
            self.slots.release()

    async def _give_up(self, event: CloudEvent, result: DeliveryResult) -> str:
        sink = self.delivery.dead_letter_url
        message = (
            f"trigger {self.trigger.name}: event {event.id} ({event.type}) failed after "
            f"{result.attempts} attempt(s) to {result.url} with status {result.last.status}"
        )
        if sink is None:
            log.warning("%s; no dead-letter sink, dropping it", message)
            return "failed"
        if sink == LOCAL_DEAD_LETTER_SINK:
            await self.broker.stream.keep_dead_letter(dead_letter(event, result))
            log.warning("%s; kept in %s", message, self.broker.stream.dead_letters_key)
            return "dead_lettered"
        sink_spec = DeliverySpec(
            retry=self.delivery.retry,
            backoff_policy=self.delivery.backoff_policy,
            backoff_delay=self.delivery.backoff_delay,
            timeout=self.delivery.timeout,
        )
        sent = await deliver(
            self.broker.http,
            sink,
            dead_letter(event, result),
            sink_spec,
            max_reply_bytes=self.broker.max_event_bytes,
            credentials=self.broker.credentials(),
        )
        if not sent.succeeded:
            log.error(
                "%s; the dead-letter sink %s answered %d too, dropping it", message, sink, sent.last.status
            )
            return "failed"
        log.info("%s; sent to the dead-letter sink", message)
        return "dead_lettered"


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
    ) -> None:
        self.settings = settings
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
        """The Trigger's delivery spec, else the Broker's (Knative's fallback), with a default timeout."""
        spec = trigger.delivery or (self.config.delivery if self.config else None) or DeliverySpec()
        if spec.timeout is None:
            spec = DeliverySpec(
                retry=spec.retry,
                backoff_policy=spec.backoff_policy,
                backoff_delay=spec.backoff_delay,
                timeout=self.settings.default_timeout,
                dead_letter_url=spec.dead_letter_url,
            )
        return spec

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

    async def accept(self, event: CloudEvent) -> None:
        """Append an event to the stream (durable once this returns), stamped as Knative's ingress does."""
        ttl = event.extensions.get(TTL, "")
        stamped = event.with_extensions(
            **{ARRIVAL_TIME: now_rfc3339(), TTL: ttl if ttl.isdigit() else str(DEFAULT_TTL)}
        )
        await self.stream.append(stamped)

    async def accept_reply(self, original: CloudEvent, reply: CloudEvent) -> None:
        """A subscriber's reply re-enters the broker with the TTL decremented; at 0 it is dropped."""
        ttl = int(original.extensions.get(TTL, DEFAULT_TTL)) - 1
        if ttl <= 0:
            broker_events.labels(self.settings.ingress_path, "ttl_exhausted").inc()
            log.warning(
                "dropping reply %s (%s) to event %s: %s reached 0 (an event loop?)",
                reply.id,
                reply.type,
                original.id,
                TTL,
            )
            return
        # The reply's own span, under the delivery that brought it: its deliveries continue from here.
        with tracing.tracer(__name__).start_as_current_span(
            f"reply {reply.type}",
            kind=SpanKind.PRODUCER,
            attributes={"cloudevents.event_id": reply.id, "cloudevents.event_type": reply.type},
        ):
            await self.accept(reply.with_extensions(**{TTL: str(ttl)}))
        broker_events.labels(self.settings.ingress_path, "replied").inc()

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
        except CloudEventError as exc:
            broker_events.labels(self.settings.ingress_path, "invalid").inc()
            return error_answer(exc.status, exc.code, exc.message)
        try:
            await self.accept(event)
        except (RedisError, OSError):
            broker_events.labels(self.settings.ingress_path, "unavailable").inc()
            return error_answer(
                503, "unavailable", "the broker cannot store events right now (Redis is down); retry"
            )
        broker_events.labels(self.settings.ingress_path, "accepted").inc()
        return Answer(202, {}, b"")
