"""What a running tool may use: the confined workspace, settings, the embedder and the code index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.settings import Settings
from common.workspace import Workspace
from functions.tools.code_index import CodeIndex
from functions.tools.settings import ToolsSettings


@dataclass
class ToolContext:
    settings: Settings
    tools_settings: ToolsSettings
    workspace: Workspace
    # The in-process text embedder used when no embeddings function is configured.
    embedder: Any = None
    # The embeddings function's index and search, when VICTOR_EMBEDDINGS_URL is set (code_search uses it).
    code_index: CodeIndex | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def cap(self, text: str) -> str:
        """`text` cut to the output limit, saying how much was left out."""
        limit = self.tools_settings.output_limit
        if len(text) <= limit:
            return text
        return text[:limit] + f"\n[output truncated: {len(text) - limit} more characters]"
