"""The tool catalog: every tool this function serves, in one registry."""

from __future__ import annotations

from functions.tools.command import COMMAND_TOOLS
from functions.tools.files import FILE_TOOLS
from functions.tools.git import GIT_TOOLS
from functions.tools.registry import ToolRegistry
from functions.tools.search import SEARCH_TOOLS


def build_catalog() -> ToolRegistry:
    return ToolRegistry((*FILE_TOOLS, *SEARCH_TOOLS, *GIT_TOOLS, *COMMAND_TOOLS))
