"""LLM providers behind one interface (`providers.base.Provider`); `build_provider` picks one."""

from __future__ import annotations

from common.settings import Settings
from functions.chat.providers.base import Provider
from functions.chat.settings import ChatSettings


def build_provider(settings: Settings, chat: ChatSettings) -> Provider | None:
    """The configured provider, or None when no provider is configured (imports its SDK lazily)."""
    if chat.provider == "anthropic":
        from functions.chat.providers.anthropic import AnthropicProvider

        return AnthropicProvider(settings, chat)
    if chat.provider == "openai":
        from functions.chat.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(settings, chat)
    return None
