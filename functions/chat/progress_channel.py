"""Live progress of a chat request over Redis pub/sub, so any replica's step reaches the SSE client.

Each request has one channel. The replica running a step publishes what
happens (text deltas, tool calls, tool results, done, error); the replica
holding the client's HTTP connection subscribes before the loop starts and
relays each message as a Server-Sent Event. Publishing is fail-soft: with
Redis down the loop still runs and the waiter falls back to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

import msgspec
from redis.exceptions import RedisError

from common.cache import Cache

log = logging.getLogger(__name__)
StreamKind = Literal["text", "tool_call", "tool_result", "done", "error"]
FINAL: frozenset[str] = frozenset({"done", "error"})


class StreamMessage(msgspec.Struct, kw_only=True):
    """One progress message: `kind` names it, `data` is its JSON payload."""

    kind: StreamKind
    data: dict[str, Any]


_decoder = msgspec.json.Decoder(StreamMessage)


def channel(cache: Cache, request_id: str) -> str:
    return cache.key("chat", "stream", request_id)


async def publish(cache: Cache, request_id: str, kind: StreamKind, data: dict[str, Any]) -> None:
    """Publish one progress message; dropped (with a debug log) when Redis is down."""
    if cache.client is None:
        return
    try:
        await cache.client.publish(
            channel(cache, request_id), msgspec.json.encode(StreamMessage(kind=kind, data=data))
        )
    except (RedisError, OSError) as exc:
        log.debug("could not publish chat progress: %s", type(exc).__name__)


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
        except (RedisError, OSError) as exc:
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
        except (RedisError, OSError):
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
            with contextlib.suppress(RedisError, OSError):
                await self.pubsub.aclose()
            self.pubsub = None
