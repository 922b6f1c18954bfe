"""Conversations in PostgreSQL, kept as a step state machine.

A conversation is at one `turn` (the number of its next or current LLM call,
counted across requests) in one `phase`: idle, llm (the call of `turn` is due)
or tools (waiting for the results of that call's tool uses). Every transition
is one transaction that checks the phase it expects under a row lock, so two
replicas, or one event delivered twice, cannot both take the same step. The
LLM call itself is claimed with a `claimed_at` lease that its holder renews
while the model answers, so a crashed replica's step is taken again within the
lease, never twice at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
import msgspec

from common.lease import LEASE_SECONDS
from common.store import Store
from eventing.schemas.chat import ChatCompleted, ChatFailed, ToolCallRecord, Usage
from eventing.schemas.tools import ToolCall, ToolResult
from functions.chat.providers.base import Message, ModelTurn, ToolResultBlock

_blocks = msgspec.json.Decoder(list[Any])


class RequestState(msgspec.Struct, kw_only=True):
    id: str
    conversation_id: str
    status: Literal["running", "completed", "failed"]
    provider: str
    model: str
    max_tokens: int
    system: str | None
    stream: bool
    first_turn: int
    answer: str | None = None
    stop_reason: str | None = None
    code: str | None = None
    error: str | None = None
    provider_status: int | None = None


class Begun(msgspec.Struct, kw_only=True):
    """The outcome of starting a request: new, already started (a redelivery), or the conversation is busy."""

    state: Literal["new", "existing", "busy"]
    request: RequestState | None = None
    busy_with: str | None = None


ResultsOutcome = Literal["advanced", "max_rounds", "duplicate", "unknown"]


class StoredMessage(msgspec.Struct, kw_only=True):
    seq: int
    role: str
    request_id: str
    turn: int | None
    content: list[Any]
    created_at: datetime


class LLMCallRecord(msgspec.Struct, kw_only=True):
    turn: int
    request_id: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal
    duration_ms: float
    stop_reason: str
    from_cache: bool


class ConversationView(msgspec.Struct, kw_only=True):
    """A stored conversation as GET /v1/conversations/{id} returns it."""

    id: str
    turn: int
    phase: str
    created_at: datetime
    messages: list[StoredMessage]
    requests: list[RequestState]
    tool_calls: list[ToolCallRecord]
    llm_calls: list[LLMCallRecord]
    usage: Usage


_REQUEST_COLUMNS = (
    "id, conversation_id, status, provider, model, max_tokens, system, stream, first_turn,"
    " answer, stop_reason, code, error, provider_status"
)


def _request(row: asyncpg.Record) -> RequestState:
    return RequestState(**dict(row))


class ConversationStore:
    def __init__(self, store: Store, priced: Callable[[str], bool] = lambda _model: True) -> None:
        self.store = store
        # Whether a model has a price (unpriced models are named in ChatCompleted.unpriced_models).
        self.priced = priced

    async def unpriced_models(self, conversation_id: str, request_id: str) -> list[str]:
        """The models of a request's LLM calls (answered by the provider, not the cache) without a price."""
        pool = await self.store.pool()
        rows = await pool.fetch(
            "SELECT DISTINCT model FROM chat_llm_calls"
            " WHERE conversation_id = $1 AND request_id = $2 AND NOT from_cache ORDER BY model",
            conversation_id,
            request_id,
        )
        return [row["model"] for row in rows if not self.priced(row["model"])]

    async def begin(
        self,
        *,
        conversation_id: str,
        request_id: str,
        message: str,
        provider: str,
        model: str,
        max_tokens: int,
        system: str | None,
        stream: bool,
    ) -> Begun:
        """Record a new request and its user message, and claim its first LLM call (one round trip)."""
        pool = await self.store.pool()
        row = await pool.fetchrow(
            "SELECT o_outcome, o_busy_with, o_turn, o_system"
            " FROM chat_begin($1, $2, $3::jsonb, $4, $5, $6, $7, $8)",
            conversation_id,
            request_id,
            msgspec.json.encode([{"type": "text", "text": message}]).decode(),
            provider,
            model,
            max_tokens,
            system,
            stream,
        )
        if row["o_outcome"] == "busy":
            return Begun(state="busy", busy_with=row["o_busy_with"])
        if row["o_outcome"] == "existing":
            return Begun(state="existing", request=await self.request(request_id))
        request = RequestState(
            id=request_id,
            conversation_id=conversation_id,
            status="running",
            provider=provider,
            model=model,
            max_tokens=max_tokens,
            system=row["o_system"],
            stream=stream,
            first_turn=row["o_turn"],
        )
        return Begun(state="new", request=request)

    async def expire_step(self, conversation_id: str, timeout: float) -> bool:
        """End the conversation's running request when its step has been left for more than `timeout`
        seconds: an LLM call whose lease lapsed that long ago with no retry taking it, or tool results
        that never came back (their `tools.completed` was dead-lettered, say). The request fails with
        `step_expired` and the conversation is idle again. False when nothing expired.
        """
        pool = await self.store.pool()
        async with pool.acquire() as connection, connection.transaction():
            stale = await connection.fetchrow(
                "SELECT active_request, turn, phase FROM chat_conversations WHERE id = $1"
                " AND phase IN ('llm', 'tools')"
                " AND coalesce(claimed_at, updated_at) < now() - make_interval(secs => $2) FOR UPDATE",
                conversation_id,
                timeout,
            )
            if stale is None:
                return False
            turn = stale["turn"]
            if stale["phase"] == "llm":
                error = f"step {turn} of conversation {conversation_id} was not taken within {timeout:g}s"
            else:
                error = (
                    f"the tool results of step {turn} of conversation {conversation_id}"
                    f" did not come within {timeout:g}s"
                )
            await self._finish(
                connection,
                conversation_id,
                stale["active_request"],
                turn + 1,
                status="failed",
                code="step_expired",
                error=f"{error} (its replica stopped, or its event was lost); the next message ended it",
            )
            return True

    async def _append(
        self,
        connection: asyncpg.Connection,
        conversation_id: str,
        request_id: str,
        role: str,
        content: Any,
        turn: int | None = None,
    ) -> None:
        await connection.execute(
            "INSERT INTO chat_messages (conversation_id, seq, request_id, role, content, turn)"
            " SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4::jsonb, $5"
            " FROM chat_messages WHERE conversation_id = $1",
            conversation_id,
            request_id,
            role,
            msgspec.json.encode(content).decode(),
            turn,
        )

    async def claim_llm(
        self, conversation_id: str, request_id: str, turn: int, lease: float = LEASE_SECONDS
    ) -> bool:
        """Take the LLM call of `turn` if it is due and nobody holds it (or their lease lapsed)."""
        pool = await self.store.pool()
        row = await pool.fetchval(
            "UPDATE chat_conversations SET claimed_at = now() WHERE id = $1 AND active_request = $2"
            " AND turn = $3 AND phase = 'llm'"
            " AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $4)) RETURNING id",
            conversation_id,
            request_id,
            turn,
            lease,
        )
        return row is not None

    async def renew_llm(self, conversation_id: str, request_id: str, turn: int) -> bool:
        """Renew the lease of a claimed LLM call; False once it is no longer claimed (released or done)."""
        pool = await self.store.pool()
        row = await pool.fetchval(
            "UPDATE chat_conversations SET claimed_at = now() WHERE id = $1 AND active_request = $2"
            " AND turn = $3 AND phase = 'llm' AND claimed_at IS NOT NULL RETURNING id",
            conversation_id,
            request_id,
            turn,
        )
        return row is not None

    async def release_llm(self, conversation_id: str, turn: int) -> None:
        """Give back a claimed LLM call that did not finish, so a retry may take it at once."""
        pool = await self.store.pool()
        await pool.execute(
            "UPDATE chat_conversations SET claimed_at = NULL WHERE id = $1 AND turn = $2 AND phase = 'llm'",
            conversation_id,
            turn,
        )

    async def messages(self, conversation_id: str) -> list[Message]:
        """The conversation's messages in order, as sent to the model."""
        pool = await self.store.pool()
        rows = await pool.fetch(
            "SELECT role, content::text AS content FROM chat_messages"
            " WHERE conversation_id = $1 ORDER BY seq",
            conversation_id,
        )
        return [
            msgspec.json.decode(
                b'{"role":"' + row["role"].encode() + b'","content":' + row["content"].encode() + b"}",
                type=Message,
            )
            for row in rows
        ]

    async def request(self, request_id: str) -> RequestState | None:
        pool = await self.store.pool()
        row = await pool.fetchrow(
            f"SELECT {_REQUEST_COLUMNS} FROM chat_requests WHERE id = $1",  # noqa: S608 - constant columns
            request_id,
        )
        if row is None:
            return None
        return _request(row)

    async def record_turn(
        self,
        *,
        conversation_id: str,
        request_id: str,
        turn: int,
        model_turn: ModelTurn,
        provider: str,
        cost: Decimal,
        duration_ms: float,
        from_cache: bool,
    ) -> bool:
        """Store an LLM call's answer, usage and tool calls and move on: to tools, or the request is
        completed (one round trip). False when the step was no longer due (another replica recorded it)."""
        pool = await self.store.pool()
        usage = model_turn.usage
        uses = [{"id": use.id, "name": use.name, "input": use.input} for use in model_turn.tool_uses]
        recorded = await pool.fetchval(
            "SELECT chat_record_turn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb,"
            " $15::jsonb, $16)",
            conversation_id,
            request_id,
            turn,
            provider,
            model_turn.model,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            cost,
            duration_ms,
            model_turn.stop_reason,
            from_cache,
            msgspec.json.encode(model_turn.content).decode(),
            msgspec.json.encode(uses).decode(),
            model_turn.text,
        )
        return bool(recorded)

    async def _finish(
        self,
        connection: asyncpg.Connection,
        conversation_id: str,
        request_id: str,
        next_turn: int,
        *,
        status: str,
        answer: str | None = None,
        stop_reason: str | None = None,
        code: str | None = None,
        error: str | None = None,
        provider_status: int | None = None,
    ) -> None:
        await connection.execute(
            "UPDATE chat_requests SET status = $2, answer = $3, stop_reason = $4, code = $5, error = $6,"
            " provider_status = $7, finished_at = now() WHERE id = $1",
            request_id,
            status,
            answer,
            stop_reason,
            code,
            error,
            provider_status,
        )
        await connection.execute(
            "UPDATE chat_conversations SET phase = 'idle', turn = $2, active_request = NULL,"
            " claimed_at = NULL, updated_at = now() WHERE id = $1",
            conversation_id,
            next_turn,
        )

    async def fail(
        self,
        *,
        conversation_id: str,
        request_id: str,
        turn: int,
        code: str,
        error: str,
        provider_status: int | None = None,
    ) -> bool:
        """End a request whose LLM call of `turn` failed for good; False when that step was not due."""
        pool = await self.store.pool()
        async with pool.acquire() as connection, connection.transaction():
            due = await connection.fetchval(
                "SELECT 1 FROM chat_conversations WHERE id = $1 AND active_request = $2 AND turn = $3"
                " AND phase = 'llm' FOR UPDATE",
                conversation_id,
                request_id,
                turn,
            )
            if due is None:
                return False
            await self._finish(
                connection,
                conversation_id,
                request_id,
                turn + 1,
                status="failed",
                code=code,
                error=error,
                provider_status=provider_status,
            )
            return True

    async def record_results(
        self, conversation_id: str, turn: int, results: list[ToolResult], max_rounds: int
    ) -> tuple[ResultsOutcome, RequestState | None]:
        """Store the tool results of `turn` and make the next LLM call due (or end at the round limit).

        Results are matched to the calls by id; a call with no result is given an error result so
        the model always sees one result per tool use, as the API requires.
        """
        pool = await self.store.pool()
        async with pool.acquire() as connection, connection.transaction():
            conversation = await connection.fetchrow(
                "SELECT turn, phase, active_request FROM chat_conversations WHERE id = $1 FOR UPDATE",
                conversation_id,
            )
            owner = await connection.fetchval(
                "SELECT request_id FROM chat_tool_calls WHERE conversation_id = $1 AND turn = $2 LIMIT 1",
                conversation_id,
                turn,
            )
            if conversation is None or owner is None:
                return "unknown", None
            request = _request(
                await connection.fetchrow(
                    f"SELECT {_REQUEST_COLUMNS} FROM chat_requests WHERE id = $1",  # noqa: S608
                    owner,
                )
            )
            if not (conversation["phase"] == "tools" and conversation["turn"] == turn):
                return "duplicate", request
            calls = await connection.fetch(
                "SELECT id, name FROM chat_tool_calls WHERE conversation_id = $1 AND turn = $2"
                " ORDER BY position",
                conversation_id,
                turn,
            )
            by_id = {result.id: result for result in results}
            blocks = []
            for call in calls:
                result = by_id.get(call["id"]) or ToolResult(
                    id=call["id"],
                    name=call["name"],
                    is_error=True,
                    content="the tools function returned no result",
                )
                await connection.execute(
                    "UPDATE chat_tool_calls SET is_error = $3, content = $4, duration_ms = $5,"
                    " completed_at = now() WHERE conversation_id = $1 AND id = $2",
                    conversation_id,
                    call["id"],
                    result.is_error,
                    result.content,
                    result.duration_ms,
                )
                blocks.append(
                    ToolResultBlock(tool_use_id=call["id"], content=result.content, is_error=result.is_error)
                )
            await self._append(
                connection, conversation_id, request.id, "user", msgspec.to_builtins(blocks), turn
            )
            rounds = turn + 1 - request.first_turn
            if rounds >= max_rounds:
                error = (
                    f"the model asked for tools {rounds} times; the limit is {max_rounds} tool rounds"
                    " per request (VICTOR_CHAT_MAX_TOOL_ROUNDS)"
                )
                await self._finish(
                    connection,
                    conversation_id,
                    request.id,
                    turn + 1,
                    status="failed",
                    code="max_tool_rounds",
                    error=error,
                )
                request.status, request.code, request.error = "failed", "max_tool_rounds", error
                return "max_rounds", request
            await connection.execute(
                # The next LLM call is claimed by whoever recorded the results: it runs it next.
                "UPDATE chat_conversations SET phase = 'llm', turn = $2, claimed_at = now(),"
                " updated_at = now() WHERE id = $1",
                conversation_id,
                turn + 1,
            )
            return "advanced", request

    async def llm_call(self, conversation_id: str, turn: int) -> LLMCallRecord | None:
        pool = await self.store.pool()
        row = await pool.fetchrow(
            "SELECT turn, request_id, provider, model, input_tokens, output_tokens, cache_read_tokens,"
            " cache_write_tokens, cost_usd, duration_ms, stop_reason, from_cache"
            " FROM chat_llm_calls WHERE conversation_id = $1 AND turn = $2",
            conversation_id,
            turn,
        )
        return LLMCallRecord(**dict(row)) if row is not None else None

    async def tool_calls(
        self,
        conversation_id: str,
        *,
        turn: int | None = None,
        request_id: str | None = None,
        db: Any = None,
    ) -> list[ToolCallRecord]:
        """The tool calls of a conversation (of one turn or request); `db`: a connection to read on."""
        db = db or await self.store.pool()
        rows = await db.fetch(
            "SELECT id, name, arguments::text AS arguments, turn, is_error, content, duration_ms"
            " FROM chat_tool_calls WHERE conversation_id = $1 AND ($2::int IS NULL OR turn = $2)"
            " AND ($3::text IS NULL OR request_id = $3) ORDER BY turn, position",
            conversation_id,
            turn,
            request_id,
        )
        return [
            ToolCallRecord(
                id=row["id"],
                name=row["name"],
                arguments=msgspec.json.decode(row["arguments"]),
                turn=row["turn"],
                is_error=row["is_error"],
                content=row["content"],
                duration_ms=row["duration_ms"],
            )
            for row in rows
        ]

    async def calls_of_turn(self, conversation_id: str, turn: int) -> list[ToolCall]:
        return [
            ToolCall(id=record.id, name=record.name, arguments=record.arguments)
            for record in await self.tool_calls(conversation_id, turn=turn)
        ]

    async def usage(
        self, conversation_id: str, request_id: str | None = None, *, db: Any = None
    ) -> tuple[Usage, int]:
        """Summed usage (and the number of LLM calls) of a request, or of the whole conversation."""
        db = db or await self.store.pool()
        row = await db.fetchrow(
            "SELECT count(*) AS calls, coalesce(sum(input_tokens), 0) AS input_tokens,"
            " coalesce(sum(output_tokens), 0) AS output_tokens,"
            " coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,"
            " coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens,"
            " coalesce(sum(cost_usd), 0) AS cost_usd"
            " FROM chat_llm_calls WHERE conversation_id = $1 AND ($2::text IS NULL OR request_id = $2)",
            conversation_id,
            request_id,
        )
        usage = Usage(
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            cache_read_tokens=int(row["cache_read_tokens"]),
            cache_write_tokens=int(row["cache_write_tokens"]),
            cost_usd=float(row["cost_usd"]),
        )
        return usage, int(row["calls"])

    async def completed(self, request: RequestState) -> ChatCompleted:
        """The `ChatCompleted` payload of a completed request, from what is stored."""
        usage, calls = await self.usage(request.conversation_id, request.id)
        last = await self.store_last_model(request)
        return ChatCompleted(
            conversation_id=request.conversation_id,
            request_id=request.id,
            answer=request.answer or "",
            stop_reason=request.stop_reason or "end_turn",
            provider=request.provider,
            model=last,
            llm_calls=calls,
            tool_calls=await self.tool_calls(request.conversation_id, request_id=request.id),
            usage=usage,
            unpriced_models=await self.unpriced_models(request.conversation_id, request.id),
        )

    async def store_last_model(self, request: RequestState) -> str:
        pool = await self.store.pool()
        model = await pool.fetchval(
            "SELECT model FROM chat_llm_calls WHERE request_id = $1 ORDER BY turn DESC LIMIT 1", request.id
        )
        return str(model or request.model)

    @staticmethod
    def failed(request: RequestState) -> ChatFailed:
        return ChatFailed(
            conversation_id=request.conversation_id,
            request_id=request.id,
            code=request.code or "failed",
            error=request.error or "the request failed",
            provider_status=request.provider_status,
        )

    async def view(self, conversation_id: str) -> ConversationView | None:
        """The whole conversation as one snapshot: its reads share a repeatable-read transaction, so a
        request already `completed` is never shown without the messages its completion stored."""
        pool = await self.store.pool()
        async with (
            pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await self._view(connection, conversation_id)

    async def _view(self, db: Any, conversation_id: str) -> ConversationView | None:
        conversation = await db.fetchrow(
            "SELECT id, turn, phase, created_at FROM chat_conversations WHERE id = $1", conversation_id
        )
        if conversation is None:
            return None
        messages = [
            StoredMessage(
                seq=row["seq"],
                role=row["role"],
                request_id=row["request_id"],
                turn=row["turn"],
                content=_blocks.decode(row["content"]),
                created_at=row["created_at"],
            )
            for row in await db.fetch(
                "SELECT seq, role, request_id, turn, content::text AS content, created_at FROM chat_messages"
                " WHERE conversation_id = $1 ORDER BY seq",
                conversation_id,
            )
        ]
        requests = [
            _request(row)
            for row in await db.fetch(
                f"SELECT {_REQUEST_COLUMNS} FROM chat_requests"  # noqa: S608 - constant columns
                " WHERE conversation_id = $1 ORDER BY first_turn",
                conversation_id,
            )
        ]
        calls = [
            LLMCallRecord(**dict(row))
            for row in await db.fetch(
                "SELECT turn, request_id, provider, model, input_tokens, output_tokens, cache_read_tokens,"
                " cache_write_tokens, cost_usd, duration_ms, stop_reason, from_cache"
                " FROM chat_llm_calls WHERE conversation_id = $1 ORDER BY turn",
                conversation_id,
            )
        ]
        usage, _ = await self.usage(conversation_id, db=db)
        return ConversationView(
            id=conversation["id"],
            turn=conversation["turn"],
            phase=conversation["phase"],
            created_at=conversation["created_at"],
            messages=messages,
            requests=requests,
            tool_calls=await self.tool_calls(conversation_id, db=db),
            llm_calls=calls,
            usage=usage,
        )

    async def exists(self, conversation_id: str) -> bool:
        pool = await self.store.pool()
        return bool(await pool.fetchval("SELECT 1 FROM chat_conversations WHERE id = $1", conversation_id))
