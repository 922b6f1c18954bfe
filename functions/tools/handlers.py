"""The tools function's handlers: its HTTP routes and `ai.victor.tools.requested` → `.completed`.

Routes: `GET /v1/tools` (the catalog), `POST /v1/tools/{name}` (one call; the
body is the arguments object: unknown tool 404, arguments that do not fit the
tool's schema 422 naming the field; a call that runs and fails answers 200 with
`is_error: true`), `POST /v1/tools/batch` and `POST /v1/tools/select`.

Besides the app-level (source, id) idempotency, every call is journaled by
(conversation_id, turn, call id): a call that changes the workspace is
claimed before it runs and its result stored before the reply, so a
redelivered request (even one whose stored reply was lost, or one re-sent
with a new event id) gets the stored result and never re-runs a write. A
write that was claimed but never finished (the process died) is reported as
interrupted instead of being repeated.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Any

import msgspec

from common.answers import Refusal
from common.cloudevents import CloudEvent, decode_data, new_event
from common.function import Call
from common.runtime import Runtime
from eventing.schemas.chat import CONVERSATION_ID
from eventing.schemas.tools import TOOLS_COMPLETED, ToolResult, ToolsCompleted, ToolsRequested
from functions.tools.execution import CallRequest, ToolOutcome
from functions.tools.registry import InvalidArguments, ToolInfo, UnknownTool
from functions.tools.selection import Selection, SelectionUnavailable, SelectRequest
from functions.tools.service import ToolsState, service_of

INTERRUPTED = (
    "this call was started by an earlier delivery that did not finish; it changes the workspace, "
    "so it is not run again; check the workspace and call it again if needed"
)
_MEMORY_LIMIT = 10_000
MAX_BATCH = 100
Tools = Runtime[ToolsState]


class Catalog(msgspec.Struct, kw_only=True):
    catalog_version: str
    tools: list[ToolInfo]


class BatchCall(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    id: str | None = None


# The body of POST /v1/tools/{name}: the tool's arguments, checked against its Struct when it runs.
ToolArguments = dict[str, Any]


class BatchRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    calls: Annotated[list[BatchCall], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class BatchResponse(msgspec.Struct, kw_only=True):
    results: list[ToolOutcome]


async def list_tools(call: Call[None], runtime: Tools) -> Catalog:
    """Every tool with its JSON Schema and flags, and the catalog version."""
    registry = service_of(runtime).registry
    return Catalog(catalog_version=registry.version, tools=registry.infos())


async def run_tool(call: Call[dict[str, Any]], runtime: Tools) -> ToolOutcome:
    """Run one call; the body is the arguments object (the tool's input schema in GET /v1/tools)."""
    executor = service_of(runtime).executor
    try:
        prepared = executor.prepare(call.params["name"], call.body)
    except UnknownTool as exc:
        raise Refusal(404, str(exc), "not_found") from None
    except InvalidArguments as exc:
        raise Refusal(422, str(exc), "invalid_request") from None
    return await executor.execute(prepared)


async def run_batch(call: Call[BatchRequest], runtime: Tools) -> BatchResponse:
    """Run many calls; each result carries is_error and a message instead of failing the batch."""
    calls = [CallRequest(c.name, c.arguments, c.id) for c in call.body.calls]
    return BatchResponse(results=await service_of(runtime).executor.run_batch(calls))


async def select_tools(call: Call[SelectRequest], runtime: Tools) -> Selection:
    """The k tools most relevant to the query, best first, with scores."""
    try:
        return await service_of(runtime).selector.select(call.body)
    except SelectionUnavailable as exc:
        raise Refusal.unavailable(str(exc)) from None


class CallJournal:
    """Per-call results in PostgreSQL (`tool_call_results`), or a bounded in-process map without it."""

    def __init__(self, runtime: Runtime[Any]) -> None:
        self.runtime = runtime
        self.memory: OrderedDict[tuple[str, int, str], bytes | None] = OrderedDict()

    async def recorded(self, conversation: str, turn: int, ids: list[str]) -> dict[str, ToolResult | None]:
        """Calls already seen: a stored result, or None for a claim that never finished."""
        if not self.runtime.store.configured:
            found = {
                i: self.memory[(conversation, turn, i)] for i in ids if (conversation, turn, i) in self.memory
            }
        else:
            pool = await self.runtime.store.pool()
            rows = await pool.fetch(
                "SELECT call_id, result FROM tool_call_results"
                " WHERE conversation_id = $1 AND turn = $2 AND call_id = ANY($3::text[])",
                conversation,
                turn,
                ids,
            )
            found = {row["call_id"]: row["result"] for row in rows}
        return {i: msgspec.json.decode(v, type=ToolResult) if v else None for i, v in found.items()}

    async def claim(self, conversation: str, turn: int, call_id: str, name: str) -> None:
        if not self.runtime.store.configured:
            self._remember((conversation, turn, call_id), None)
            return
        pool = await self.runtime.store.pool()
        await pool.execute(
            "INSERT INTO tool_call_results (conversation_id, turn, call_id, name, state)"
            " VALUES ($1, $2, $3, $4, 'running') ON CONFLICT DO NOTHING",
            conversation,
            turn,
            call_id,
            name,
        )

    async def finish(self, conversation: str, turn: int, results: list[ToolResult]) -> None:
        if not self.runtime.store.configured:
            for result in results:
                self._remember((conversation, turn, result.id), msgspec.json.encode(result))
            return
        pool = await self.runtime.store.pool()
        await pool.executemany(
            "INSERT INTO tool_call_results (conversation_id, turn, call_id, name, state, result, finished_at)"
            " VALUES ($1, $2, $3, $4, 'done', $5, now())"
            " ON CONFLICT (conversation_id, turn, call_id) DO UPDATE"
            " SET state = 'done', result = EXCLUDED.result, finished_at = now()",
            [(conversation, turn, r.id, r.name, msgspec.json.encode(r)) for r in results],
        )

    def _remember(self, key: tuple[str, int, str], value: bytes | None) -> None:
        self.memory[key] = value
        while len(self.memory) > _MEMORY_LIMIT:
            self.memory.popitem(last=False)


def as_result(outcome: ToolOutcome, call_id: str) -> ToolResult:
    return ToolResult(
        id=call_id,
        name=outcome.name,
        is_error=outcome.is_error,
        content=outcome.content,
        duration_ms=outcome.duration_ms,
        error=outcome.error,
    )


async def on_tools_requested(event: CloudEvent, runtime: Tools) -> CloudEvent:
    """Run every call of the turn (bounded, in parallel) and reply with their results in order."""
    request = decode_data(event, ToolsRequested)
    service = service_of(runtime)
    if runtime.state.journal is None:
        runtime.state.journal = CallJournal(runtime)
    journal = runtime.state.journal
    ids = [call.id for call in request.calls]
    seen = await journal.recorded(request.conversation_id, request.turn, ids)
    results: dict[str, ToolResult] = {}
    to_run: list[CallRequest] = []
    for call in request.calls:
        if call.id in results:
            continue
        if call.id in seen:
            stored = seen[call.id]
            if stored is not None:
                results[call.id] = stored
                continue
            if call.name in service.registry and not service.registry.get(call.name).read_only:
                results[call.id] = ToolResult(
                    id=call.id, name=call.name, is_error=True, content=INTERRUPTED, error="interrupted"
                )
                continue
        if call.name in service.registry and not service.registry.get(call.name).read_only:
            await journal.claim(request.conversation_id, request.turn, call.id, call.name)
        to_run.append(CallRequest(call.name, call.arguments, call.id))
    outcomes = await service.executor.run_batch(to_run)
    fresh = [
        as_result(outcome, request_call.id or "")
        for outcome, request_call in zip(outcomes, to_run, strict=True)
    ]
    await journal.finish(request.conversation_id, request.turn, fresh)
    results.update((result.id, result) for result in fresh)
    reply = ToolsCompleted(
        conversation_id=request.conversation_id,
        turn=request.turn,
        results=[results[call.id] for call in request.calls],
    )
    return new_event(
        TOOLS_COMPLETED,
        runtime.source,
        reply,
        subject=event.id,
        extensions={CONVERSATION_ID: request.conversation_id},
    )
