"""Everything one tools process serves with: catalog, executor, selector; built at start."""

from __future__ import annotations

from dataclasses import dataclass

from common.function import Runtime
from common.workspace import Workspace
from functions.tools.catalog import build_catalog
from functions.tools.code_index import CodeIndex
from functions.tools.context import ToolContext
from functions.tools.embedder import make_embedder
from functions.tools.execution import ToolExecutor
from functions.tools.registry import ToolRegistry
from functions.tools.result_cache import ResultCache
from functions.tools.selection import ToolSelector
from functions.tools.settings import ToolsSettings, load_tools_settings

STATE_KEY = "tools"


@dataclass
class ToolsService:
    registry: ToolRegistry
    context: ToolContext
    executor: ToolExecutor
    selector: ToolSelector

    @classmethod
    def build(cls, runtime: Runtime, tools_settings: ToolsSettings | None = None) -> ToolsService:
        settings = runtime.settings
        limits = tools_settings or load_tools_settings()
        registry = build_catalog()
        embeddings_url = settings.function_urls.get("embeddings")
        embedder = make_embedder(embeddings_url, settings.embedding_model, runtime.http)
        code_index = None
        if embeddings_url:
            code_index = CodeIndex(
                embeddings_url,
                runtime.http,
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
            http=runtime.http,
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


def service_of(runtime: Runtime) -> ToolsService:
    service: ToolsService = runtime.state[STATE_KEY]
    return service
