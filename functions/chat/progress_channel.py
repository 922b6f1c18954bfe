"""Live progress of a chat request over Redis pub/sub, so any replica's step reaches the SSE client.

Each request has one channel. The replica running a step publishes what
happens (text deltas, tool calls, tool results, done, error); the replica
holding the client's HTTP connection subscribes before the loop starts and
relays each message as a Server-Sent Event. Publishing is fail-soft: with
Redis down the loop still runs and the waiter falls back to the store.

Each message is also appended to the request's log (a Redis list that lives
LOG_TTL_SECONDS after its last message); its position there is its `seq`, the
SSE event id, so a client that reconnects with `Last-Event-ID` is replayed
what it missed (`replay`) and then follows the channel again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

import msgspec

from common.cache import Cache

log = logging.getLogger(__name__)
StreamKind = Literal["text", "tool_call", "tool_result", "done", "error"]
FINAL: frozenset[str] = frozenset({"done", "error"})
# How long a request's log outlives its last message (a live request publishes far more often).
LOG_TTL_SECONDS = 3600


class StreamMessage(msgspec.Struct, kw_only=True):
    """One progress message: `kind` names it, `data` is its JSON payload."""

    kind: StreamKind
    data: dict[str, Any]
    # Position in the request's log from 1; 0 when not logged (Redis down, or read from the store).
    seq: int = 0


_decoder = msgspec.json.Decoder(StreamMessage)


def channel(cache: Cache, request_id: str) -> str:
    return cache.key("chat", "stream", request_id)


def log_key(cache: Cache, request_id: str) -> str:
    return cache.key("chat", "stream-log", request_id)


async def publish(cache: Cache, request_id: str, kind: StreamKind, data: dict[str, Any]) -> None:
    """Publish one progress message; dropped (with a debug log) when Redis is down."""
    if cache.client is None:
        return
    try:
        # RPUSH answers the new length: the message's number, which its position in the log implies.
        key = log_key(cache, request_id)
        seq = await cache.client.rpush(key, msgspec.json.encode(StreamMessage(kind=kind, data=data)))
        async with cache.client.pipeline(transaction=False) as pipe:
            pipe.expire(key, LOG_TTL_SECONDS)
            pipe.publish(
                channel(cache, request_id), msgspec.json.encode(StreamMessage(kind=kind, data=data, seq=seq))
            )
            await pipe.execute()
    except cache.errors as exc:
        log.debug("could not publish chat progress: %s", type(exc).__name__)


async def replay(cache: Cache, request_id: str, after: int) -> list[StreamMessage] | None:
    """The request's logged messages after `after`, in order; None when no log is kept for it."""
    if cache.client is None:
        return None
    key = log_key(cache, request_id)
    try:
        if not await cache.client.exists(key):
            return None
        raw = await cache.client.lrange(key, after, -1)
    except cache.errors:
        return None
    messages = [_decoder.decode(item) for item in raw]
    for position, message in enumerate(messages, start=after + 1):
        message.seq = position
    return messages


class Subscription:
    """A subscription to one request's channel, opened before the request starts so nothing is missed."""

    def __init__(self, cache: Cache, request_id: str) -> None:
        self.cache = cache
        self.request_id = request_id
        self.pubsub: Any = None

    async def open(self) -> bool:
        """Subscribe; False when Redis is unavailable (the caller then polls the store)."""
        if self.cache.client is None:
            return False
        try:
            self.pubsub = self.cache.client.pubsub()
            await self.pubsub.subscribe(channel(self.cache, self.request_id))
            return True
        except self.cache.errors as exc:
            log.warning(
                "cannot subscribe to chat progress, polling the store instead: %s", type(exc).__name__
            )
            self.pubsub = None
            return False

    async def next(self, timeout: float) -> StreamMessage | None:
        """The next message, or None when none came within `timeout` seconds."""
        if self.pubsub is None:
            await asyncio.sleep(timeout)
            return None
        try:
            raw = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        except self.cache.errors:
            self.pubsub = None
            return None
        if raw is None or raw.get("type") != "message":
            return None
        try:
            return _decoder.decode(raw["data"])
        except msgspec.DecodeError:
            return None

    async def close(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(*self.cache.errors):
                await self.pubsub.aclose()
            self.pubsub = None
