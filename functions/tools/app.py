"""The tools function's Litestar app (`victor serve tools`), MCP at /mcp included."""

from __future__ import annotations

from litestar import Litestar

from common.app import create_app
from common.settings import Settings
from functions.tools.function import FUNCTION, build_function
from functions.tools.settings import ToolsSettings


def create(settings: Settings | None = None, tools_settings: ToolsSettings | None = None) -> Litestar:
    return create_app(build_function(tools_settings) if tools_settings else FUNCTION, settings)
