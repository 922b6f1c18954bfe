"""Real subscriber servers and a real broker for the broker conformance tests.

`Subscriber` is a raw ASGI app a test scripts: each request is recorded and
answered by the next scripted `Reply` (or the default). `served_broker` runs the
broker app (real Redis) on its own stream so tests never share state.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import yaml

from common.cloudevents import CloudEvent, from_http, new_event, to_binary
from common.settings import Settings
from eventing.broker.app import BROKER_KEY, BrokerApp, create
from eventing.broker.dispatch import Broker
from eventing.broker.settings import BrokerSettings, load_broker_settings
from tests.support.recorder import read_request
from tests.support.servers import running

NAMESPACE = "victor"
BROKER = "default"
INGRESS = f"/{NAMESPACE}/{BROKER}"
# Retries a hundredth of a second apart, so tests of retrying take no time.
FAST = {"backoffPolicy": "exponential", "backoffDelay": "PT0.01S"}


@dataclass(frozen=True)
class Reply:
    """How a subscriber answers one request."""

    status: int = 202
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    event: CloudEvent | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> CloudEvent:
        return from_http(self.headers, self.body, max_bytes=1 << 20)


class Subscriber:
    """A real HTTP subscriber: records every request, answers with scripted replies."""

    def __init__(
        self,
        script: Iterable[Reply] = (),
        *,
        default: Reply | None = None,
        respond: Callable[[CloudEvent], Reply] | None = None,
        hold_until_in_flight: int = 0,
    ) -> None:
        self.script = deque(script)
        # Each request waits (at most 10 s) until this many are in flight: proves concurrency.
        self.hold_until_in_flight = hold_until_in_flight
        self.default = default or Reply()
        self.respond = respond
        self.received: list[Received] = []
        self._arrived = asyncio.Condition()
        self.in_flight = 0
        self.most_in_flight = 0

    def paths(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, count: int, *, path: str | None = None, timeout: float = 10.0) -> list[Received]:
        """The first `count` requests (to `path`, if given); fails the test after `timeout` seconds."""

        def enough() -> bool:
            return len(self.paths(path) if path else self.received) >= count

        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(enough), timeout)
            except TimeoutError:
                got = len(self.paths(path) if path else self.received)
                raise AssertionError(
                    f"expected {count} requests{f' to {path}' if path else ''}, got {got}"
                ) from None
        return (self.paths(path) if path else self.received)[:count]

    def _answer(self, event: CloudEvent | None) -> Reply:
        if self.script:
            return self.script.popleft()
        if self.respond is not None and event is not None:
            return self.respond(event)
        return self.default

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = await read_request(scope, receive, send)
        if request is None:
            return
        headers, body = request
        record = Received(scope["path"], headers, body, time.monotonic())
        try:
            event = record.event
        except Exception:  # a subscriber in a test also sees what is not an event
            event = None
        async with self._arrived:
            self.received.append(record)
            self._arrived.notify_all()
        reply = self._answer(event)
        async with self._arrived:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._arrived.notify_all()
        try:
            if self.hold_until_in_flight:
                async with self._arrived:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._arrived.wait_for(lambda: self.most_in_flight >= self.hold_until_in_flight),
                            10,
                        )
            if reply.delay:
                await asyncio.sleep(reply.delay)
        finally:
            self.in_flight -= 1
        out_headers = dict(reply.headers)
        out_body = reply.body
        if reply.event is not None:
            event_headers, out_body = to_binary(reply.event)
            out_headers.update(event_headers)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode(), v.encode()) for k, v in out_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": out_body})


def event(type: str = "ai.victor.test.happened", **kwargs: Any) -> CloudEvent:
    """A small JSON event with a fresh id."""
    data = kwargs.pop("data", {"n": 1})
    return new_event(type, kwargs.pop("source", "/tests/broker"), data, **kwargs)


def replying(reply_type: str, status: int = 200) -> Subscriber:
    """A subscriber answering each event with `status` and one event of `reply_type` about it."""
    return Subscriber(
        respond=lambda e: Reply(status, event=event(reply_type, id=f"reply-to-{e.id}", subject=e.id))
    )


def write_manifests(directory: Path, text: str) -> Path:
    """The YAML `text` (dedented) as knative/base/eventing.yaml under `directory`."""
    path = directory / "knative" / "base"
    path.mkdir(parents=True, exist_ok=True)
    (path / "eventing.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def broker_manifest(delivery: Mapping[str, Any] | None = None) -> dict[str, Any]:
    spec = {"delivery": dict(delivery)} if delivery else {}
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": BROKER, "namespace": NAMESPACE},
        "spec": spec,
    }


def trigger_manifest(
    name: str,
    subscriber: str | Mapping[str, Any],
    *,
    broker: str = BROKER,
    filter: Mapping[str, str] | None = None,
    filters: list[Any] | None = None,
    delivery: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Trigger; `subscriber` is a URI or a destination mapping (ref/uri)."""
    spec: dict[str, Any] = {
        "broker": broker,
        "subscriber": {"uri": subscriber} if isinstance(subscriber, str) else dict(subscriber),
    }
    if filter is not None:
        spec["filter"] = {"attributes": dict(filter)}
    if filters is not None:
        spec["filters"] = filters
    if delivery is not None:
        spec["delivery"] = dict(delivery)
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def dead_lettered(retry: int, sink: str | Mapping[str, Any]) -> dict[str, Any]:
    """Delivery retrying `retry` times at the FAST backoff, then dead-lettering to `sink` (URI or ref)."""
    return {"retry": retry, **FAST, "deadLetterSink": {"uri": sink} if isinstance(sink, str) else dict(sink)}


def write_objects(directory: Path, *objects: Mapping[str, Any]) -> Path:
    """Kubernetes objects as one multi-document YAML file in knative/base under `directory`."""
    return write_manifests(directory, yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False))


def broker_settings(
    settings: Settings, triggers_path: Path, stream: str | None = None, **env: str
) -> BrokerSettings:
    """Broker settings for a test: its own stream unless `stream` is given."""
    environ = {
        "VICTOR_TRIGGERS_PATH": str(triggers_path),
        "VICTOR_BROKER_STREAM": stream or f"victor:test-broker:{uuid.uuid4().hex}",
        **env,
    }
    return load_broker_settings(settings, environ)


def broker_of(app: BrokerApp) -> Broker:
    served: Broker = app.state.runtime.state[BROKER_KEY]
    return served


@contextlib.asynccontextmanager
async def mesh(
    settings: Settings, directory: Path, *objects: Mapping[str, Any], stream: str | None = None, **env: str
) -> AsyncIterator[tuple[str, Broker]]:
    """A broker serving these Broker/Trigger objects; yields its ingress URL and the `Broker`."""
    config = broker_settings(settings, write_objects(directory, *objects), stream, **env)
    async with served_broker(settings, config) as served:
        yield served


def routed(
    settings: Settings,
    directory: Path,
    routes: Mapping[str, str],
    *,
    delivery: Mapping[str, Any] | None = None,
    broker_delivery: Mapping[str, Any] | None = None,
    stream: str | None = None,
    **env: str,
) -> contextlib.AbstractAsyncContextManager[tuple[str, Broker]]:
    """`mesh` of the Broker and one unfiltered Trigger per `routes` entry (name: subscriber URI).

    `delivery` goes on every Trigger, `broker_delivery` on the Broker (inherited by Triggers without one).
    """
    triggers = [trigger_manifest(name, uri, delivery=delivery) for name, uri in routes.items()]
    return mesh(settings, directory, broker_manifest(broker_delivery), *triggers, stream=stream, **env)


@contextlib.asynccontextmanager
async def dead_lettering(
    settings: Settings, directory: Path, subscriber: Subscriber, sink: Subscriber, retry: int, path: str = ""
) -> AsyncIterator[tuple[str, str, Broker]]:
    """Both served; one Trigger "t" sends to `subscriber` (at `path`), retrying `retry` times, then to `sink`.

    Yields the subscriber's URL, the broker's ingress URL and the `Broker`.
    """
    async with (
        running(subscriber) as url,
        running(sink) as sink_url,
        routed(settings, directory, {"t": url + path}, delivery=dead_lettered(retry, sink_url)) as served,
    ):
        yield url, *served


@contextlib.asynccontextmanager
async def served_broker(settings: Settings, config: BrokerSettings) -> AsyncIterator[tuple[str, Broker]]:
    """The broker app over real HTTP; yields its ingress URL and the running `Broker`."""
    app = create(settings, config)
    async with running(app) as url:
        yield url + INGRESS, broker_of(app)


async def publish(ingress_url: str, *events: CloudEvent, token: str | None = None) -> None:
    """POST each event in binary mode (with `Authorization: Bearer <token>` when given); each must get 202."""
    async with httpx.AsyncClient() as client:
        for item in events:
            headers, body = to_binary(item)
            if token is not None:
                headers["authorization"] = f"Bearer {token}"
            response = await client.post(ingress_url, headers=headers, content=body)
            assert response.status_code == 202, response.text


async def stored_events(broker: Broker) -> list[CloudEvent]:
    """The events in the broker's stream, oldest first, as the broker stored them (TTL included)."""
    entries = await broker.client.xrange(broker.stream.key)
    return [msgspec.msgpack.decode(fields[b"e"], type=CloudEvent) for _, fields in entries]


async def settled(broker: Broker, timeout: float = 10.0) -> None:
    """Wait until every Trigger has read every entry in the stream and has nothing pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await broker.client.xinfo_stream(broker.stream.key)
        last = info["last-generated-id"]
        groups = await broker.stream.groups()
        if all(int(g["pending"]) == 0 and g["last-delivered-id"] == last for g in groups):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the broker did not settle every delivery in time")
