"""The health function's Litestar app (`victor serve health`)."""

from __future__ import annotations

from litestar import Litestar

from common.app import create_app
from common.settings import Settings
from functions.health.function import FUNCTION


def create(settings: Settings | None = None) -> Litestar:
    return create_app(FUNCTION, settings)
