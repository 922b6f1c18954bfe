"""The chat function's Litestar app (`victor serve chat`)."""

from __future__ import annotations

import os

from litestar import Litestar

from common.app import create_app
from common.settings import Settings, get_settings
from functions.chat.function import build_function
from functions.chat.settings import ChatSettings, load_chat_settings


def create(settings: Settings | None = None, chat_settings: ChatSettings | None = None) -> Litestar:
    """The chat app; a bad chat setting stops start-up with one line naming the variable."""
    settings = settings or get_settings()
    chat_settings = chat_settings or load_chat_settings(os.environ, settings)
    return create_app(build_function(chat_settings), settings)
