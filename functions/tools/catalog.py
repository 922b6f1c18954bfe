"""The tool catalog: every tool this function serves, in one registry."""

from __future__ import annotations

from functions.tools.registry import ToolRegistry
from functions.tools.toolset.files import FILE_TOOLS
from functions.tools.toolset.git import GIT_TOOLS
from functions.tools.toolset.run_command import COMMAND_TOOLS
from functions.tools.toolset.search import SEARCH_TOOLS


def build_catalog() -> ToolRegistry:
    return ToolRegistry((*FILE_TOOLS, *SEARCH_TOOLS, *GIT_TOOLS, *COMMAND_TOOLS))
