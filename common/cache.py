"""The shared Redis cache, fail-soft.

When Redis is unreachable, reads are misses and writes are dropped: functions keep
answering and /health reports Redis as down. After a failure Redis is left alone
for a short back-off so each request does not wait on a dead connection.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from common import metrics

if TYPE_CHECKING:
    import redis.asyncio as redis

log = logging.getLogger(__name__)
_BACKOFF_SECONDS = 1.0
# INCR and PEXPIRE in one script, so replicas sharing Redis never see a window without its expiry.
_COUNT_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
"""


class Cache:
    """Namespaced byte cache over redis.asyncio; every method is safe when Redis is down."""

    def __init__(self, url: str | None, *, namespace: str = "victor", timeout: float = 0.5) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self._client: redis.Redis | None = None
        # What a Redis call may raise; RedisError joins once the client (and so redis) is loaded.
        self.errors: tuple[type[Exception], ...] = (OSError,)
        self._down_until = 0.0
        self.last_error: str | None = None

    @property
    def configured(self) -> bool:
        return self.url is not None

    @property
    def client(self) -> redis.Redis | None:
        """The redis.asyncio client (None without REDIS_URL), made on first use: importing redis
        took about a fifth of a second of cold start, and no readiness probe waits for Redis."""
        if self._client is None and self.url:
            import redis.asyncio as redis
            from redis.exceptions import RedisError

            self._client = redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
            self.errors = (RedisError, OSError)
        return self._client

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def _usable(self) -> redis.Redis | None:
        if self.client is None or time.monotonic() < self._down_until:
            return None
        return self.client

    def _failed(self, exc: Exception) -> None:
        if self.last_error is None:
            log.warning("redis unavailable, serving without cache: %s", type(exc).__name__)
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._down_until = time.monotonic() + _BACKOFF_SECONDS

    def _ok(self) -> None:
        if self.last_error is not None:
            log.info("redis is reachable again")
        self.last_error = None

    async def get(self, key: str, *, cache: str | None = None) -> bytes | None:
        """The value at `key`, or None on a miss or when Redis is down; counts hits for `cache`."""
        client = self._usable()
        value: Any = None
        if client is not None:
            try:
                value = await client.get(key)
                self._ok()
            except self.errors as exc:
                self._failed(exc)
        if cache is not None:
            metrics.record_cache(cache, hit=value is not None)
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, *, ttl: int | None = None) -> bool:
        """Store `value`; False when Redis is down."""
        client = self._usable()
        if client is None:
            return False
        try:
            await client.set(key, value, ex=ttl)
            self._ok()
            return True
        except self.errors as exc:
            self._failed(exc)
            return False

    async def get_many(self, keys: list[str], *, cache: str | None = None) -> list[bytes | None]:
        """The values at `keys` in one round trip (None for each miss, all None when Redis is down)."""
        client = self._usable()
        values: list[Any] = [None] * len(keys)
        if client is not None and keys:
            try:
                values = list(await client.mget(keys))
                self._ok()
            except self.errors as exc:
                self._failed(exc)
        if cache is not None:
            for value in values:
                metrics.record_cache(cache, hit=value is not None)
        return [bytes(value) if value is not None else None for value in values]

    async def set_many(self, items: dict[str, bytes], *, ttl: int | None = None) -> bool:
        """Store every item in one pipelined round trip; False when Redis is down."""
        client = self._usable()
        if client is None or not items:
            return False
        try:
            async with client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(key, value, ex=ttl)
                await pipe.execute()
            self._ok()
            return True
        except self.errors as exc:
            self._failed(exc)
            return False

    async def delete(self, *keys: str) -> int:
        client = self._usable()
        if client is None or not keys:
            return 0
        try:
            removed = int(await client.delete(*keys))
            self._ok()
            return removed
        except self.errors as exc:
            self._failed(exc)
            return 0

    async def count(self, key: str, window: int) -> tuple[int, float] | None:
        """Add one to the window counter at `key` atomically: its count and the seconds left in its window.

        The first count of a window starts it (`window` seconds); None when Redis is down.
        """
        client = self._usable()
        if client is None:
            return None
        try:
            count, left_ms = await client.eval(_COUNT_IN_WINDOW, 1, key, window * 1000)  # type: ignore[misc]
            self._ok()
        except self.errors as exc:
            self._failed(exc)
            return None
        return int(count), max(int(left_ms), 0) / 1000

    async def ping(self) -> None:
        """Raise when Redis does not answer; used by health checks (ignores the back-off)."""
        if self.client is None:
            raise RuntimeError("REDIS_URL is not set")
        try:
            await self.client.ping()
            self._ok()
        except self.errors as exc:
            self._failed(exc)
            raise

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
