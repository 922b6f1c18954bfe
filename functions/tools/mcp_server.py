"""The same catalog over the Model Context Protocol (streamable HTTP) at /mcp.

Built on the official `mcp` package's low-level `Server` and its
`StreamableHTTPSessionManager` (stateless, JSON responses: any replica can
answer any request, as Knative needs). tools/list returns every tool with its
JSON Schema, its annotations from the registry's flags (read-only, idempotent,
destructive: any tool that writes; open-world: `run_command`, which can reach
anything the program can) and, for list_directory, glob, grep and
code_search, an output schema; their results carry `structuredContent` beside
the text. tools/call runs through the same executor as HTTP and events, so
confinement, caching, timeouts and metrics are identical. Failures come back
as `isError` results with the message, as MCP prescribes for tool errors.

The `mcp` package (with pydantic) took most of the tools function's cold start,
so nothing here imports it until the first /mcp request: that request imports it
in a worker thread and starts the session manager in a task of its own, which
holds the manager's task group until `stop_mcp`.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any

from common.answers import Refusal, refusal_answer
from common.runtime import VERSION, Runtime
from functions.tools.registry import InvalidArguments, ToolDefinition, UnknownTool
from functions.tools.service import ToolsService, ToolsState

if TYPE_CHECKING:
    import mcp_types as types
    from mcp.server.lowlevel.server import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager


def mcp_tool(tool: ToolDefinition) -> types.Tool:
    """A registry tool as MCP lists it: schemas and the behaviour hints clients show or act on."""
    import mcp_types as types

    return types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.schema(),
        output_schema=tool.output_schema(),
        annotations=types.ToolAnnotations(
            title=tool.title,
            read_only_hint=tool.read_only,
            destructive_hint=not tool.read_only,
            idempotent_hint=tool.idempotent,
            open_world_hint=tool.dangerous,
        ),
    )


def build_server(service: ToolsService) -> Server[Any]:
    import mcp_types as types
    from mcp.server.lowlevel.server import Server

    async def list_tools(_ctx: Any, _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[mcp_tool(tool) for tool in service.registry])

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            call = service.executor.prepare(params.name, params.arguments or {})
        except (UnknownTool, InvalidArguments) as exc:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(exc))], is_error=True
            )
        outcome = await service.executor.execute(call)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=outcome.content)],
            structured_content=None if outcome.is_error else outcome.structured,
            is_error=outcome.is_error,
        )

    return Server("victor-tools", version=VERSION, on_list_tools=list_tools, on_call_tool=call_tool)


def _load_mcp() -> None:
    """Import the parts of `mcp` the endpoint uses (run in a worker thread: it takes a while)."""
    for module in ("mcp_types", "mcp.server.lowlevel.server", "mcp.server.streamable_http_manager"):
        importlib.import_module(module)


async def _run_manager(
    runtime: Runtime[ToolsState], service: ToolsService, started: asyncio.Future[StreamableHTTPSessionManager]
) -> None:
    """Hold the session manager's task group open until `stop_mcp` (entered and left in this task)."""
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    try:
        manager = StreamableHTTPSessionManager(
            app=build_server(service),
            stateless=True,
            json_response=True,
            max_request_body_size=runtime.settings.max_event_bytes,
        )
        async with manager.run():
            started.set_result(manager)
            await runtime.state.mcp_stop.wait()
    except Exception as exc:  # handed to the request that is waiting for the manager
        if not started.done():
            started.set_exception(exc)
            return
        raise
    finally:
        if not started.done():  # cancelled while starting (the app is stopping)
            started.cancel()


async def started_manager(
    runtime: Runtime[ToolsState], service: ToolsService
) -> StreamableHTTPSessionManager:
    """The running session manager; the first caller imports `mcp` and starts it, others wait."""
    async with runtime.state.mcp_lock:
        if runtime.state.mcp_manager is None:
            await asyncio.to_thread(_load_mcp)
            started: asyncio.Future[StreamableHTTPSessionManager] = asyncio.get_running_loop().create_future()
            runtime.state.mcp_task = runtime.background(_run_manager(runtime, service, started), "tools-mcp")
            runtime.state.mcp_manager = await started
    return runtime.state.mcp_manager


async def stop_mcp(runtime: Runtime[ToolsState]) -> None:
    """End the session manager, if a request started one (its in-flight requests finish first)."""
    task, runtime.state.mcp_task = runtime.state.mcp_task, None
    if task is not None:
        runtime.state.mcp_stop.set()
        await asyncio.gather(task, return_exceptions=True)
    runtime.state.mcp_manager = None


async def mcp_endpoint(runtime: Runtime[ToolsState], scope: Any, receive: Any, send: Any) -> None:
    """The MCP streamable HTTP endpoint (POST JSON-RPC; GET/DELETE as the transport defines)."""
    service = runtime.state.service
    if service is None:  # a request before start finished: answer like a not-ready function
        answer = refusal_answer(Refusal.unavailable("the MCP endpoint is starting"))
        headers = [(name.encode(), value.encode()) for name, value in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})
        return
    manager = runtime.state.mcp_manager or await started_manager(runtime, service)
    await manager.handle_request(scope, receive, send)
