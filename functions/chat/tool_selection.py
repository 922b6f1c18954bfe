"""Asks the tools function which tools fit a request (POST /v1/tools/select), to send only those.

With no tools function configured (VICTOR_TOOLS_URL), the model gets no tools;
that is logged once. An unreachable tools function is a transient failure:
the step is retried rather than run without the tools the model may need.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from common.function import TransientFailure
from common.settings import Settings
from common.tracing import current_headers
from functions.chat.providers.base import ToolSpec
from functions.chat.settings import ChatSettings

log = logging.getLogger(__name__)
_SCHEMA_KEYS = ("input_schema", "inputSchema", "parameters", "schema")


class ToolSelector:
    def __init__(self, http: httpx.AsyncClient, settings: Settings, chat: ChatSettings) -> None:
        self.http = http
        self.url = settings.function_urls.get("tools")
        self.chat = chat
        self._warned = False

    async def select(self, query: str) -> list[ToolSpec]:
        """The top-k tools for `query`, best first, each with its JSON schema."""
        if self.url is None:
            if not self._warned:
                log.warning("VICTOR_TOOLS_URL is not set: the model is offered no tools")
                self._warned = True
            return []
        body = {"query": query, "k": self.chat.tools_top_k, "strategy": self.chat.tools_strategy}
        try:
            response = await self.http.post(
                f"{self.url}/v1/tools/select", json=body, headers=current_headers(), timeout=30.0
            )
        except httpx.HTTPError as exc:
            raise TransientFailure(
                f"cannot reach the tools function to select tools: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise TransientFailure(f"the tools function answered {response.status_code} to /v1/tools/select")
        return parse_selection(response.json())[: self.chat.tools_top_k]


def parse_selection(document: Any) -> list[ToolSpec]:
    """Tool specs from a selection answer: a list, or an object with `tools`/`results`, of tools
    (or of {tool, score} entries) carrying name, description and a JSON schema."""
    if isinstance(document, dict):
        document = next((document[k] for k in ("tools", "results", "selected") if k in document), [])
    specs = []
    for entry in document if isinstance(document, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("tool"), dict):
            entry = entry["tool"]
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        schema = next((entry[k] for k in _SCHEMA_KEYS if isinstance(entry.get(k), dict)), None)
        if schema is None:
            schema = {"type": "object", "properties": {}}
        specs.append(
            ToolSpec(name=entry["name"], description=str(entry.get("description", "")), input_schema=schema)
        )
    return specs
