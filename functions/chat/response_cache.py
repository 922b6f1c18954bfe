"""An optional Redis cache of LLM answers to identical deterministic requests (temperature 0).

The key is a hash of everything that shapes the answer: provider, model,
system prompt, messages, tools, max_tokens and temperature. Look-ups count in
`victor_cache_hit_ratio{cache="llm_responses"}`.
"""

from __future__ import annotations

import hashlib

import msgspec

from common.cache import Cache
from functions.chat.providers.base import ModelRequest, ModelTurn
from functions.chat.settings import ChatSettings

CACHE_NAME = "llm_responses"
_decoder = msgspec.json.Decoder(ModelTurn)


class ResponseCache:
    def __init__(self, cache: Cache, settings: ChatSettings) -> None:
        self.cache = cache
        self.settings = settings

    def applies(self, request: ModelRequest) -> bool:
        """Only deterministic requests are cached, and only when the cache is switched on."""
        return self.settings.response_cache and request.temperature == 0

    def key(self, provider: str, request: ModelRequest) -> str:
        digest = hashlib.sha256(provider.encode() + b"\0" + msgspec.json.encode(request)).hexdigest()
        return self.cache.key("llm", "response", digest)

    async def get(self, provider: str, request: ModelRequest) -> ModelTurn | None:
        raw = await self.cache.get(self.key(provider, request), cache=CACHE_NAME)
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            return None

    async def put(self, provider: str, request: ModelRequest, turn: ModelTurn) -> None:
        await self.cache.set(
            self.key(provider, request), msgspec.json.encode(turn), ttl=self.settings.response_cache_ttl
        )
