"""The embeddings function's Litestar app (`victor serve embeddings`)."""

from __future__ import annotations

from litestar import Litestar

from common.app import create_app
from common.embedding_model import check_model_source
from common.settings import Settings, get_settings
from functions.embeddings.function import build_function
from functions.embeddings.settings import EmbeddingSettings, load_embedding_settings


def create(settings: Settings | None = None, embedding: EmbeddingSettings | None = None) -> Litestar:
    """The app; raises `SettingsError` (one line naming the variable) when the model cannot be found."""
    settings = settings or get_settings()
    embedding = embedding or load_embedding_settings()
    check_model_source(settings.embedding_model, settings.embedding_backend)
    return create_app(build_function(embedding), settings)
