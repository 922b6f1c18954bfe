"""The tools function, declared once: its event, its route table, its MCP mount, its lifecycle."""

from __future__ import annotations

from common.function import FunctionSpec, Mount, Route
from common.runtime import Runtime
from eventing.schemas.chat import CONVERSATION_ID
from eventing.schemas.tools import TOOLS_REQUESTED
from functions.tools.execution import ToolOutcome
from functions.tools.handlers import (
    BatchRequest,
    BatchResponse,
    Catalog,
    ToolArguments,
    list_tools,
    on_tools_requested,
    run_batch,
    run_tool,
    select_tools,
)
from functions.tools.mcp_server import mcp_endpoint, stop_mcp
from functions.tools.process import hide_environment_from_children, restore_dumpable
from functions.tools.selection import Selection, SelectRequest
from functions.tools.service import ToolsService, ToolsState
from functions.tools.settings import ToolsSettings

# Matched in order: the fixed paths come before the {name} template.
ROUTES = [
    Route("GET", "/v1/tools", list_tools, returns=Catalog, summary="The tool catalog"),
    Route("POST", "/v1/tools/batch", run_batch, BatchRequest, BatchResponse, summary="Run many calls"),
    Route(
        "POST", "/v1/tools/select", select_tools, SelectRequest, Selection, summary="Rank tools for a query"
    ),
    Route(
        "POST",
        "/v1/tools/{name}",
        run_tool,
        ToolArguments,
        ToolOutcome,
        summary="Run one tool call; the body is its arguments",
    ),
]


def build_function(tools_settings: ToolsSettings | None = None) -> FunctionSpec:
    """The function; `tools_settings` default to the environment's, read at start (tests pass their own)."""

    async def start(runtime: Runtime[ToolsState]) -> None:
        service = ToolsService.build(runtime, tools_settings)
        runtime.state.service = service
        if service.context.tools_settings.enable_run_command:
            # A command runs as our user: it must not read our environment (keys, passwords) in /proc.
            runtime.state.dumpable_before = hide_environment_from_children()

    async def stop(runtime: Runtime[ToolsState]) -> None:
        await stop_mcp(runtime)
        restore_dumpable(runtime.state.dumpable_before)

    return FunctionSpec(
        name="tools",
        event_handlers={TOOLS_REQUESTED: on_tools_requested},
        routes=ROUTES,
        # MCP starts on its first request and stops with the app: served under `victor serve tools` only.
        mounts=[Mount("/mcp", mcp_endpoint)],
        reports=("redis", "postgres"),
        propagates=(CONVERSATION_ID,),
        state=ToolsState,
        start=start,
        stop=stop,
    )


FUNCTION = build_function()
