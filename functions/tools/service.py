"""What one tools process serves with (catalog, executor, selector; built at start) and its typed state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common.answers import Refusal
from common.runtime import Runtime
from common.workspace import Workspace
from functions.tools.catalog import build_catalog
from functions.tools.code_index import CodeIndex
from functions.tools.context import ToolContext
from functions.tools.execution import ToolExecutor
from functions.tools.registry import ToolRegistry
from functions.tools.result_cache import ResultCache
from functions.tools.selection import ToolSelector
from functions.tools.settings import ToolsSettings, load_tools_settings
from functions.tools.text_embedder import make_embedder

if TYPE_CHECKING:
    import httpx
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from functions.tools.handlers import CallJournal


@dataclass
class ToolsService:
    registry: ToolRegistry
    context: ToolContext
    executor: ToolExecutor
    selector: ToolSelector

    @classmethod
    def build(cls, runtime: Runtime[Any], tools_settings: ToolsSettings | None = None) -> ToolsService:
        settings = runtime.settings
        limits = tools_settings or load_tools_settings()
        registry = build_catalog()
        embeddings_url = settings.function_urls.get("embeddings")

        def http() -> httpx.AsyncClient:  # made at the first call out: httpx is not start's work
            client: httpx.AsyncClient = runtime.http
            return client

        embedder = make_embedder(embeddings_url, settings.embedding_model, http, settings.embedding_backend)
        code_index = None
        if embeddings_url:
            code_index = CodeIndex(
                embeddings_url,
                http,
                collection=limits.code_search_collection,
                timeout=limits.tool_timeout,
            )
        settings.workspace_dir.mkdir(parents=True, exist_ok=True)
        context = ToolContext(
            settings=settings,
            tools_settings=limits,
            workspace=Workspace(
                settings.workspace_dir, max_file_size=limits.max_file_size, secret_files=settings.secret_files
            ),
            embedder=embedder,
            code_index=code_index,
        )
        results = ResultCache(
            runtime.cache,
            enabled=settings.enable_tool_cache,
            ttl=settings.cache_ttl,
            catalog_version=registry.version,
        )
        executor = ToolExecutor(
            registry,
            context,
            results,
            parallel=settings.enable_parallel_execution,
            max_concurrent=settings.max_concurrent_tools,
            timeout=limits.tool_timeout,
        )
        selector = ToolSelector(
            registry,
            embedder,
            runtime.cache,
            cache_enabled=settings.enable_tool_cache,
            cache_size=settings.tool_cache_size,
            cache_ttl=settings.tool_cache_ttl,
        )
        return cls(registry, context, executor, selector)


@dataclass
class ToolsState:
    """What one tools process holds once started."""

    service: ToolsService | None = None
    journal: CallJournal | None = None
    # MCP's session manager, started by the first /mcp request (functions/tools/mcp_server.py).
    mcp_manager: StreamableHTTPSessionManager | None = None
    mcp_task: asyncio.Task[None] | None = None
    mcp_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    mcp_stop: asyncio.Event = field(default_factory=asyncio.Event)
    # Whether the process was dumpable before run_command made it not (restored at stop).
    dumpable_before: int | None = None


def service_of(runtime: Runtime[ToolsState]) -> ToolsService:
    """The started service; 503 before start has finished."""
    service = runtime.state.service
    if service is None:
        raise Refusal.unavailable("the tools function is starting")
    return service
