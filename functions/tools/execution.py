"""Running tool calls: one at a time or as a batch, never failing the batch.

`ToolExecutor.prepare` checks a call (unknown tool, invalid arguments);
`execute` runs it with the per-tool timeout, the result cache and metrics,
and always returns a `ToolOutcome` (a failure is `is_error` with a message).

Batches run concurrently, at most VICTOR_MAX_CONCURRENT_TOOLS at a time, when
VICTOR_ENABLE_PARALLEL_EXECUTION is true, else one after another. A call that
writes a path another call of the same batch reads or writes waits for every
such earlier call, so writes to one path happen in the order given and a read
after a write sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from opentelemetry.trace import StatusCode

from common import tracing
from common.workspace import WorkspaceError
from functions.tools import metrics
from functions.tools.context import ToolContext
from functions.tools.registry import (
    InvalidArguments,
    PathAccess,
    Rendered,
    ToolDefinition,
    ToolError,
    ToolRegistry,
    UnknownTool,
)
from functions.tools.result_cache import ResultCache

log = logging.getLogger(__name__)


class ToolOutcome(msgspec.Struct, kw_only=True):
    """The result of one call; `error` is a short code when `is_error`."""

    name: str
    is_error: bool
    content: str
    error: str | None = None
    id: str | None = None
    # The result as data, for tools that have an output schema (list_directory, glob, grep, code_search).
    structured: dict[str, Any] | None = None
    cached: bool = False
    duration_ms: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0


class _Stored(msgspec.Struct):
    """A cached result of a tool with an output schema: both forms."""

    content: str
    structured: dict[str, Any] | None = None


def pack(tool: ToolDefinition, content: str, structured: dict[str, Any] | None) -> str:
    """What the result cache keeps: the text, or for a structured tool both forms as JSON."""
    if tool.output is None:
        return content
    return msgspec.json.encode(_Stored(content, structured)).decode()


def unpack(tool: ToolDefinition, stored: str) -> tuple[str, dict[str, Any] | None]:
    if tool.output is None:
        return stored, None
    try:
        found = msgspec.json.decode(stored, type=_Stored)
    except msgspec.DecodeError:  # kept by a version that cached text only
        return stored, None
    return found.content, found.structured


@dataclass(frozen=True)
class PreparedCall:
    tool: ToolDefinition
    arguments: msgspec.Struct
    access: PathAccess
    id: str | None = None


@dataclass(frozen=True)
class CallRequest:
    name: str
    arguments: Any
    id: str | None = None


def _overlaps(first: str, second: str) -> bool:
    if "*" in (first, second) or "." in (first, second) or first == second:
        return True
    return second.startswith(first + "/") or first.startswith(second + "/")


def conflicts(earlier: PathAccess, later: PathAccess) -> bool:
    """True when the two calls touch a path in common and at least one of them writes it."""
    touched_later = (*later.reads, *later.writes)
    touched_earlier = (*earlier.reads, *earlier.writes)
    return any(_overlaps(w, p) for w in earlier.writes for p in touched_later) or any(
        _overlaps(w, p) for w in later.writes for p in touched_earlier
    )


class ToolExecutor:
    def __init__(
        self,
        registry: ToolRegistry,
        context: ToolContext,
        results: ResultCache,
        *,
        parallel: bool,
        max_concurrent: int,
        timeout: float,
    ) -> None:
        self.registry = registry
        self.context = context
        self.results = results
        self.parallel = parallel
        self.max_concurrent = max_concurrent
        self.timeout = timeout

    def prepare(self, name: str, arguments: Any, call_id: str | None = None) -> PreparedCall:
        """Raise `UnknownTool` or `InvalidArguments`; else the call, ready to run."""
        tool = self.registry.get(name)
        decoded = tool.decode(arguments)
        return PreparedCall(tool, decoded, self._access(tool, decoded), call_id)

    def _access(self, tool: ToolDefinition, arguments: msgspec.Struct) -> PathAccess:
        access = tool.paths(arguments)

        def normal(path: str) -> str:
            if path == "*":
                return path
            try:
                return self.context.workspace.relative(path)
            except WorkspaceError:
                return path  # refused later, when the call runs

        return PathAccess(tuple(map(normal, access.reads)), tuple(map(normal, access.writes)))

    async def execute(self, call: PreparedCall) -> ToolOutcome:
        """Run one prepared call in its span (`execute_tool NAME`); never raises (except cancellation)."""
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.tool.name}
        if call.id:
            attributes["gen_ai.tool.call.id"] = call.id
        with tracing.tracer(__name__).start_as_current_span(
            f"execute_tool {call.tool.name}", attributes=attributes
        ) as span:
            outcome = await self._execute(call)
            span.set_attribute("victor.tool.cached", outcome.cached)
            if outcome.error is not None:
                span.set_attribute("error.type", outcome.error)
                span.set_status(StatusCode.ERROR)
            return outcome

    async def _execute(self, call: PreparedCall) -> ToolOutcome:
        tool = call.tool
        started_at = time.time()
        started = time.perf_counter()
        outcome = "ok"
        cached = False
        error: str | None = None
        structured: dict[str, Any] | None = None
        try:
            key = await self.results.key(tool, call.arguments, self.context)
            stored = await self.results.get(key) if key else None
            if stored is not None:
                cached = True
                outcome = "cached"
                content, structured = unpack(tool, stored)
            else:
                result = await asyncio.wait_for(tool.run(call.arguments, self.context), self.timeout)
                content, structured = (
                    (result.text, msgspec.to_builtins(result.data))
                    if isinstance(result, Rendered)
                    else (result, None)
                )
                if key:
                    await self.results.put(key, pack(tool, content, structured))
        except (ToolError, WorkspaceError) as exc:
            content, error, outcome = exc.message, exc.code, "error"
        except TimeoutError:
            content = f"{tool.name} did not finish in {self.timeout:g} s"
            error, outcome = "timeout", "timeout"
        except Exception as exc:  # a bug in one tool must not fail the batch; it is logged in full
            log.exception("tool %s failed", tool.name)
            content, error, outcome = f"{tool.name} failed: {type(exc).__name__}", "internal_error", "error"
        finally:
            if not tool.read_only:
                await self.results.invalidate()
        elapsed = time.perf_counter() - started
        metrics.tool_executions.labels(tool.name, outcome).inc()
        metrics.tool_duration.labels(tool.name).observe(elapsed)
        return ToolOutcome(
            name=tool.name,
            id=call.id,
            is_error=error is not None,
            # A command's output may hold NUL bytes, which the conversation store cannot keep.
            content=content.replace("\0", "\ufffd"),
            error=error,
            structured=structured,
            cached=cached,
            duration_ms=round(elapsed * 1000, 3),
            started_at=started_at,
            finished_at=time.time(),
        )

    async def run_batch(self, requests: Sequence[CallRequest]) -> list[ToolOutcome]:
        """Every call's outcome, in the order given; bad calls become error outcomes."""
        prepared: list[PreparedCall | ToolOutcome] = []
        for request in requests:
            try:
                prepared.append(self.prepare(request.name, request.arguments, request.id))
            except (UnknownTool, InvalidArguments) as exc:
                prepared.append(
                    ToolOutcome(
                        name=request.name, id=request.id, is_error=True, content=str(exc), error=exc.code
                    )
                )
        if not self.parallel:
            return [item if isinstance(item, ToolOutcome) else await self.execute(item) for item in prepared]
        return await self._run_concurrently(prepared)

    async def _run_concurrently(self, prepared: list[PreparedCall | ToolOutcome]) -> list[ToolOutcome]:
        gate = asyncio.Semaphore(self.max_concurrent)
        done = [asyncio.Event() for _ in prepared]
        results: list[ToolOutcome | None] = [
            item if isinstance(item, ToolOutcome) else None for item in prepared
        ]

        async def run(index: int, call: PreparedCall) -> None:
            try:
                for earlier in range(index):
                    item = prepared[earlier]
                    if isinstance(item, PreparedCall) and conflicts(item.access, call.access):
                        await done[earlier].wait()
                async with gate:
                    results[index] = await self.execute(call)
            finally:
                done[index].set()

        async with asyncio.TaskGroup() as group:
            for index, item in enumerate(prepared):
                if isinstance(item, PreparedCall):
                    group.create_task(run(index, item))
                else:
                    done[index].set()
        return [result for result in results if result is not None]
