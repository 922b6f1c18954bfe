"""LLM providers behind one interface (`providers.base.Provider`); `build_provider` picks one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from common.settings import Settings
from functions.chat.providers.base import ModelRequest, ModelTurn, Provider, TextDelta
from functions.chat.settings import ChatSettings


class DeferredProvider:
    """A provider whose SDK is imported, and its client made, on the first LLM call.

    Importing the anthropic or openai SDK (with pydantic) was a third of a second of chat's
    cold start; `/health/ready` never needs it.
    """

    def __init__(self, name: str, build: Callable[[], Provider]) -> None:
        self.name = name
        self._build = build
        self._provider: Provider | None = None

    @property
    def provider(self) -> Provider:
        """The real provider, built on first use."""
        if self._provider is None:
            self._provider = self._build()
        return self._provider

    async def complete(self, request: ModelRequest) -> ModelTurn:
        return await self.provider.complete(request)

    def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelTurn]:
        return self.provider.stream(request)

    async def close(self) -> None:
        if self._provider is not None:
            await self._provider.close()


def build_provider(settings: Settings, chat: ChatSettings) -> Provider | None:
    """The configured provider, or None when no provider is configured; its SDK loads on first use."""
    if chat.provider == "anthropic":

        def anthropic() -> Provider:
            from functions.chat.providers.anthropic import AnthropicProvider

            return AnthropicProvider(settings, chat)

        return DeferredProvider("anthropic", anthropic)
    if chat.provider == "openai":

        def openai() -> Provider:
            from functions.chat.providers.openai_compat import OpenAICompatProvider

            return OpenAICompatProvider(settings, chat)

        return DeferredProvider("openai", openai)
    return None
