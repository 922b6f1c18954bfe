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
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from common.answers import Refusal, refusal_answer
from common.runtime import VERSION, Runtime
from functions.tools.registry import InvalidArguments, ToolDefinition, UnknownTool
from functions.tools.service import ToolsService, ToolsState


def mcp_tool(tool: ToolDefinition) -> types.Tool:
    """A registry tool as MCP lists it: schemas and the behaviour hints clients show or act on."""
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


async def start_mcp(runtime: Runtime[ToolsState], service: ToolsService) -> None:
    """Start the session manager (its task group lives until `stop_mcp`)."""
    manager = StreamableHTTPSessionManager(
        app=build_server(service),
        stateless=True,
        json_response=True,
        max_request_body_size=runtime.settings.max_event_bytes,
    )
    stack = AsyncExitStack()
    await stack.enter_async_context(manager.run())
    runtime.state.mcp_manager = manager
    runtime.state.mcp_stack = stack


async def stop_mcp(runtime: Runtime[ToolsState]) -> None:
    stack, runtime.state.mcp_stack = runtime.state.mcp_stack, None
    if stack is not None:
        await stack.aclose()


async def mcp_endpoint(runtime: Runtime[ToolsState], scope: Any, receive: Any, send: Any) -> None:
    """The MCP streamable HTTP endpoint (POST JSON-RPC; GET/DELETE as the transport defines)."""
    manager = runtime.state.mcp_manager
    if manager is None:  # a request before start finished: answer like a not-ready function
        answer = refusal_answer(Refusal.unavailable("the MCP endpoint is starting"))
        headers = [(name.encode(), value.encode()) for name, value in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})
        return
    await manager.handle_request(scope, receive, send)
