"""The result cache for cacheable read-only tools, shared in Redis.

A key is the tool, its arguments (canonical JSON), the catalog version, the
state of what the call reads (a file's size, mtime and inode; for a tree,
a fingerprint of every file's) and the workspace generation. Any write
through these tools bumps the generation, so every cached read is
invalidated at once, and a change made outside the tools changes the state
part of the key. Look-ups are counted as `victor_cache_hit_ratio{cache="tool_results"}`.
"""

from __future__ import annotations

import hashlib
import uuid

import msgspec

from common.cache import Cache
from functions.tools.context import ToolContext
from functions.tools.registry import ToolDefinition

CACHE_NAME = "tool_results"


class ResultCache:
    def __init__(self, cache: Cache, *, enabled: bool, ttl: int, catalog_version: str) -> None:
        self.cache = cache
        self.enabled = enabled and cache.configured
        self.ttl = ttl
        self.catalog_version = catalog_version
        self._generation_key = cache.key("tools", "generation")

    async def _generation(self) -> str:
        value = await self.cache.get(self._generation_key)
        return value.decode() if value else "0"

    async def key(self, tool: ToolDefinition, arguments: msgspec.Struct, ctx: ToolContext) -> str | None:
        """The key for this call, or None when it must not be cached."""
        if not self.enabled or not tool.cacheable or not tool.read_only or tool.state is None:
            return None
        state = await tool.state(arguments, ctx)
        if state is None:
            return None
        digest = hashlib.sha256()
        for part in (tool.name, self.catalog_version, state, await self._generation()):
            digest.update(part.encode())
            digest.update(b"\0")
        digest.update(msgspec.json.encode(arguments, order="sorted"))
        return self.cache.key("tools", "result", tool.name, digest.hexdigest())

    async def get(self, key: str) -> str | None:
        value = await self.cache.get(key, cache=CACHE_NAME)
        return value.decode("utf-8") if value is not None else None

    async def put(self, key: str, content: str) -> None:
        await self.cache.set(key, content.encode("utf-8"), ttl=self.ttl)

    async def invalidate(self) -> None:
        """Called after every write: a new generation makes every stored read unreachable."""
        if self.enabled:
            await self.cache.set(self._generation_key, uuid.uuid4().hex.encode(), ttl=None)
