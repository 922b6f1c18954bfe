"""Asks the tools function which tools fit a request, to send the model only those.

`POST /v1/tools/select` ranks tools by name (a catalog of at most
VICTOR_CHAT_TOOLS_PRUNE_THRESHOLD tools, or a ranking with no signal, is sent
whole, so a request never loses the tool it needs to a weak ranking); their JSON schemas come from
`GET /v1/tools`, fetched once per catalog version (the selection names the
version it ranked, so a changed catalog is fetched again). With no tools
function configured (VICTOR_TOOLS_URL) the model gets no tools, which is
logged once. An unreachable tools function is a transient failure: the step
is retried rather than run without the tools the model may need.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from common.answers import Refusal
from common.runtime import Runtime
from common.tracing import current_headers
from functions.chat.providers.base import ToolSpec
from functions.chat.settings import ChatSettings

log = logging.getLogger(__name__)


class _Ranked(msgspec.Struct):
    name: str


class _Selection(msgspec.Struct):
    catalog_version: str
    tools: list[_Ranked]


class _Catalog(msgspec.Struct):
    catalog_version: str
    tools: list[ToolSpec]


class ToolSelectionClient:
    """The tools function's selection API as chat calls it (HTTP); ranking itself lives in tools."""

    def __init__(self, runtime: Runtime[Any], chat: ChatSettings) -> None:
        # The runtime's HTTP client is taken at the first call: making it (httpx) is not start's work.
        self.runtime = runtime
        self.url = runtime.settings.function_urls.get("tools")
        self.chat = chat
        self._warned = False
        self._catalog_version: str | None = None
        self._schemas: dict[str, ToolSpec] = {}

    async def select(self, query: str) -> list[ToolSpec]:
        """The top-k tools for `query`, best first, each with its JSON schema."""
        if self.url is None:
            if not self._warned:
                log.warning("VICTOR_TOOLS_URL is not set: the model is offered no tools")
                self._warned = True
            return []
        body = {
            "query": query[:4000] or "tools",
            "k": self.chat.tools_top_k,
            "strategy": self.chat.tools_strategy,
            "keep_all_up_to": self.chat.tools_prune_threshold,
        }
        selection = await self._get(_Selection, "POST", "/v1/tools/select", body)
        if selection.catalog_version != self._catalog_version:
            catalog = await self._get(_Catalog, "GET", "/v1/tools")
            self._schemas = {tool.name: tool for tool in catalog.tools}
            self._catalog_version = catalog.catalog_version
        return [self._schemas[ranked.name] for ranked in selection.tools if ranked.name in self._schemas]

    async def _get(self, model: type[Any], method: str, path: str, body: Any = None) -> Any:
        http = self.runtime.http
        import httpx  # loaded by the client above

        try:
            response = await http.request(
                method, f"{self.url}{path}", json=body, headers=current_headers(), timeout=30.0
            )
        except httpx.HTTPError as exc:
            raise Refusal.unavailable(
                f"cannot reach the tools function ({path}): {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise Refusal.unavailable(
                f"the tools function answered {response.status_code} to {method} {path}"
            )
        try:
            return msgspec.json.decode(response.content, type=model)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Refusal.unavailable(f"the tools function's answer to {path} does not fit: {exc}") from exc
