"""What one chat process serves with: the agent loop as a chain of events, and the typed state.

`ai.victor.chat.requested` starts a request and takes its first LLM step;
`ai.victor.tools.completed` records a tool round and takes the next. A step
claims its LLM call in PostgreSQL, calls the model, and stores the answer,
usage and tool calls in one transaction before its reply event
(`tools.requested`, `chat.completed` or `chat.failed`) is returned. A step
found already taken is answered from the store with the same reply (same
event id), so a redelivered event never repeats an LLM call or a tool run,
and any replica can take any step.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from common.answers import Refusal
from common.cloudevents import CloudEvent, new_event
from common.lease import renewed
from common.runtime import Runtime
from common.store import store_outage
from eventing.schemas.chat import (
    CHAT_COMPLETED,
    CHAT_FAILED,
    CONVERSATION_ID,
    ChatCompleted,
    ChatFailed,
    ChatRequested,
    ToolCallRecord,
    Usage,
)
from eventing.schemas.tools import TOOLS_REQUESTED, ToolCall, ToolsCompleted, ToolsRequested
from functions.chat import metrics, progress_channel
from functions.chat.conversation_store import ConversationStore, RequestState
from functions.chat.providers.base import (
    Message,
    ModelRequest,
    ModelTurn,
    Provider,
    ProviderError,
    TextBlock,
    TextDelta,
    TokenUsage,
    model_call_span,
    record_answer,
)
from functions.chat.response_cache import ResponseCache
from functions.chat.settings import UNCONFIGURED_MESSAGE, ChatSettings
from functions.chat.tool_selection import ToolSelectionClient

log = logging.getLogger(__name__)


class ChatLoop:
    """The steps of the loop over one provider, the conversation store and the tools function."""

    def __init__(self, runtime: Runtime[Any], chat: ChatSettings, provider: Provider | None) -> None:
        self.runtime = runtime
        self.chat = chat
        self.provider = provider
        self.conversations = ConversationStore(runtime.store, lambda model: chat.price(model) is not None)
        self.selector = ToolSelectionClient(runtime, chat)
        self.responses = ResponseCache(runtime.cache, chat)
        # Models already warned about as missing from the price table (one warning per model).
        self._unpriced: set[str] = set()
        # LLM calls (conversation, turn) this process claimed and could not give back while PostgreSQL
        # was away: given back before the step is taken again, so its retry need not wait out the lease.
        self._unreleased: set[tuple[str, int]] = set()

    def _warn_unpriced(self, model: str) -> None:
        if model not in self._unpriced:
            self._unpriced.add(model)
            log.warning(
                "model %s has no price in functions/chat/prices.json or VICTOR_LLM_PRICES: its calls"
                " are counted in victor_llm_unpriced_calls_total and cost nothing in cost_usd;"
                " add its price to VICTOR_LLM_PRICES",
                model,
            )

    @property
    def step_timeout(self) -> float:
        """How long a due LLM step may go untaken (its claim lapsed, no retry came) before the
        conversation's next message ends its request: the longest a provider call may take with
        its retries, plus a margin. A running call renews its claim, so only a dead step waits."""
        return (
            self.chat.timeout * (self.chat.max_retries + 1)
            + self.chat.retry_max_wait * self.chat.max_retries
            + 30
        )

    # ------------------------------------------------------------ entry points

    async def on_chat_requested(self, event: CloudEvent, payload: ChatRequested) -> CloudEvent:
        if self.provider is None:
            raise Refusal.unavailable(UNCONFIGURED_MESSAGE)
        if not payload.message.strip():
            raise Refusal(422, "message is empty; give the text to send to the model", "invalid_data")
        if payload.max_tokens is not None and payload.max_tokens < 1:
            raise Refusal(422, "max_tokens must be at least 1", "invalid_data")
        # Defaults derive from the event id, so a redelivery maps to the same request.
        request_id = payload.request_id or event.id
        conversation_id = payload.conversation_id or str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{event.source}#{event.id}")
        )
        begin = functools.partial(
            self.conversations.begin,
            conversation_id=conversation_id,
            request_id=request_id,
            message=payload.message,
            provider=self.provider.name,
            model=payload.model or self.chat.model,
            max_tokens=payload.max_tokens or self.chat.max_tokens,
            system=payload.system,
            stream=payload.stream,
        )
        begun = await begin()
        if begun.state == "busy" and await self.conversations.expire_step(conversation_id, self.step_timeout):
            begun = await begin()  # the request it was busy with had stopped: this one goes on
        if begun.state == "busy":
            failed = ChatFailed(
                conversation_id=conversation_id,
                request_id=request_id,
                code="conversation_busy",
                error=f"conversation {conversation_id} is still answering request {begun.busy_with}; "
                "send the next message when it has finished",
            )
            await progress_channel.publish(
                self.runtime.cache, request_id, "error", msgspec.to_builtins(failed)
            )
            return self._event(CHAT_FAILED, f"{request_id}.final", conversation_id, failed)
        assert begun.request is not None
        request = begun.request
        # A new request's first LLM call was claimed as it was recorded; a new conversation's
        # messages are just the one stored, so they need not be read back.
        known = None
        if begun.state == "new" and request.first_turn == 0:
            known = [Message(role="user", content=[TextBlock(text=payload.message)])]
        return await self.step(request, request.first_turn, claimed=begun.state == "new", messages=known)

    async def on_tools_completed(self, payload: ToolsCompleted) -> CloudEvent:
        outcome, request = await self.conversations.record_results(
            payload.conversation_id, payload.turn, payload.results, self.chat.max_tool_rounds
        )
        if outcome == "unknown" or request is None:
            raise Refusal(
                422,
                f"conversation {payload.conversation_id} has no tool round {payload.turn}; "
                "the event does not answer any tools.requested",
                "unknown_round",
            )
        if outcome in ("advanced", "max_rounds") and request.stream:
            for record in await self.conversations.tool_calls(payload.conversation_id, turn=payload.turn):
                await progress_channel.publish(
                    self.runtime.cache, request.id, "tool_result", msgspec.to_builtins(record)
                )
        if outcome == "max_rounds":
            return await self._final(request)
        return await self.step(request, payload.turn + 1, claimed=outcome == "advanced")

    # ------------------------------------------------------------ one LLM step

    async def step(
        self,
        request: RequestState,
        turn: int,
        *,
        claimed: bool = False,
        messages: list[Message] | None = None,
    ) -> CloudEvent:
        """Take the LLM call of `turn` once (`claimed`: the caller's transition already claimed it);
        a step already taken is answered from the store."""
        conversation_id = request.conversation_id
        if (conversation_id, turn) in self._unreleased:
            await self.conversations.release_llm(conversation_id, turn)
            self._unreleased.discard((conversation_id, turn))
        if not claimed and not await self.conversations.claim_llm(conversation_id, request.id, turn):
            return await self.replay(request, turn)
        assert self.provider is not None
        try:
            # The claim is a lease renewed while the model answers: if this process dies, a retry
            # of the step takes the call over within the lease, inside the broker's retry window.
            async with renewed(
                functools.partial(self.conversations.renew_llm, conversation_id, request.id, turn)
            ):
                model_turn, from_cache, seconds = await self.call_model(self.provider, request, messages)
        except ProviderError as error:
            outcome = {"provider_rejected": "rejected", "provider_timeout": "timeout"}.get(
                error.code, "error"
            )
            metrics.llm_requests.labels(
                self.provider.name, self.chat.model_label(request.model), outcome
            ).inc()
            log.warning("LLM call %d of conversation %s failed: %s", turn, conversation_id, error.message)
            return await self._failed_step(request, turn, error.code, error.message, error.status or None)
        except Exception as exc:
            return await self._broken_step(request, turn, exc)
        except BaseException:  # cancelled (shutdown): another delivery takes the step again
            await self._release(conversation_id, turn)
            raise
        usage = model_turn.usage
        cost = (
            Decimal(0)
            if from_cache
            else self.chat.cost(
                model_turn.model,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
            )
        )
        if from_cache:
            metrics.llm_requests.labels(
                self.provider.name, self.chat.model_label(model_turn.model), "cached"
            ).inc()
        else:
            priced = self.chat.price(model_turn.model) is not None
            if not priced:
                self._warn_unpriced(model_turn.model)
            label = self.chat.model_label(model_turn.model)
            metrics.record_call(self.provider.name, label, usage, cost if priced else None, seconds)
        try:
            recorded = await self.conversations.record_turn(
                conversation_id=conversation_id,
                request_id=request.id,
                turn=turn,
                model_turn=model_turn,
                provider=self.provider.name,
                cost=cost,
                duration_ms=round(seconds * 1000, 3),
                from_cache=from_cache,
            )
        except Exception as exc:  # e.g. an answer PostgreSQL cannot store
            return await self._broken_step(request, turn, exc)
        if not recorded:  # the claim expired and another replica finished this step first
            log.warning("step %d of conversation %s was recorded by another replica", turn, conversation_id)
            return await self.replay(request, turn)
        # What was just stored is the reply: it is built here rather than read back.
        if model_turn.tool_uses:
            calls = [ToolCall(id=use.id, name=use.name, arguments=use.input) for use in model_turn.tool_uses]
            if request.stream:
                for call in calls:
                    record = ToolCallRecord(id=call.id, name=call.name, arguments=call.arguments, turn=turn)
                    await progress_channel.publish(
                        self.runtime.cache, request.id, "tool_call", msgspec.to_builtins(record)
                    )
            payload = ToolsRequested(conversation_id=conversation_id, turn=turn, calls=calls)
            return self._event(TOOLS_REQUESTED, f"{conversation_id}.{turn}.tools", conversation_id, payload)
        if turn != request.first_turn:  # after tool rounds the answer sums every call of the request
            finished = msgspec.structs.replace(
                request, status="completed", answer=model_turn.text, stop_reason=model_turn.stop_reason
            )
            return await self._final(finished)
        completed = ChatCompleted(
            conversation_id=conversation_id,
            request_id=request.id,
            answer=model_turn.text,
            stop_reason=model_turn.stop_reason,
            provider=self.provider.name,
            model=model_turn.model,
            llm_calls=1,
            tool_calls=[],
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                cost_usd=float(cost),
            ),
            unpriced_models=[] if from_cache or self.chat.price(model_turn.model) else [model_turn.model],
        )
        return await self._announce(completed, request.stream)

    async def _broken_step(self, request: RequestState, turn: int, exc: Exception) -> CloudEvent:
        """A step that raised: a refusal (a dependency that cannot serve now) or a store away is given
        back to be retried (the claim released); anything else ends the request now with
        `step_failed`, since a retry would fail the same way: its waiters hear of it at once and the
        conversation takes the next message."""
        if isinstance(exc, Refusal) or store_outage(exc) is not None:
            await self._release(request.conversation_id, turn)
            raise exc
        log.error("step %d of conversation %s failed", turn, request.conversation_id, exc_info=exc)
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        message = f"step {turn} of conversation {request.conversation_id} failed ({detail[:300]})"
        return await self._failed_step(request, turn, "step_failed", message)

    async def _failed_step(
        self, request: RequestState, turn: int, code: str, error: str, provider_status: int | None = None
    ) -> CloudEvent:
        """End the request whose step `turn` failed for good: chat.failed with `code` and `error`."""
        await self.conversations.fail(
            conversation_id=request.conversation_id,
            request_id=request.id,
            turn=turn,
            code=code,
            error=error,
            provider_status=provider_status,
        )
        return await self.replay(request, turn)

    async def _release(self, conversation_id: str, turn: int) -> None:
        """Give back the claim of a step that did not finish; remembered when PostgreSQL is away."""
        try:
            await self.conversations.release_llm(conversation_id, turn)
        except Exception as exc:
            if store_outage(exc) is None:
                raise
            self._unreleased.add((conversation_id, turn))

    async def replay(self, request: RequestState, turn: int) -> CloudEvent:
        """The reply of a step already taken, rebuilt from the store (same event id every time)."""
        conversation_id = request.conversation_id
        record = await self.conversations.llm_call(conversation_id, turn)
        if record is not None and record.request_id == request.id:
            calls = await self.conversations.calls_of_turn(conversation_id, turn)
            if calls:
                payload = ToolsRequested(conversation_id=conversation_id, turn=turn, calls=calls)
                return self._event(
                    TOOLS_REQUESTED, f"{conversation_id}.{turn}.tools", conversation_id, payload
                )
        current = await self.conversations.request(request.id)
        if current is not None and current.status != "running":
            return await self._final(current)
        raise Refusal.unavailable(
            f"step {turn} of conversation {conversation_id} is being taken by another replica; retry later"
        )

    async def _final(self, request: RequestState) -> CloudEvent:
        """chat.completed or chat.failed for a finished request, from the store."""
        if request.status == "completed":
            return await self._announce(await self.conversations.completed(request), request.stream)
        return await self._announce(self.conversations.failed(request), request.stream)

    async def _announce(self, payload: ChatCompleted | ChatFailed, streamed: bool) -> CloudEvent:
        """The final event of a request, first published on its stream channel when someone may be
        listening there: a streamed request, or any request when steps run through the broker."""
        done = isinstance(payload, ChatCompleted)
        if streamed or self.runtime.settings.broker_url:
            await progress_channel.publish(
                self.runtime.cache,
                payload.request_id,
                "done" if done else "error",
                msgspec.to_builtins(payload),
            )
        event_type = CHAT_COMPLETED if done else CHAT_FAILED
        return self._event(event_type, f"{payload.request_id}.final", payload.conversation_id, payload)

    def _event(self, event_type: str, event_id: str, conversation_id: str, payload: Any) -> CloudEvent:
        return new_event(
            event_type,
            self.runtime.source,
            payload,
            id=event_id,
            subject=conversation_id,
            extensions={CONVERSATION_ID: conversation_id},
        )

    # ------------------------------------------------------------ the model call

    async def call_model(
        self, provider: Provider, request: RequestState, messages: list[Message] | None = None
    ) -> tuple[ModelTurn, bool, float]:
        """One LLM call for the request's conversation as stored: (turn, from the cache, seconds)."""
        if messages is None:
            messages = await self.conversations.messages(request.conversation_id)
        tools = await self.selector.select(_last_user_text(messages))
        model_request = ModelRequest(
            model=request.model,
            messages=messages,
            max_tokens=request.max_tokens,
            system=request.system,
            tools=tools,
            temperature=self.chat.temperature,
        )
        started = time.perf_counter()
        if self.responses.applies(model_request):
            cached = await self.responses.get(provider.name, model_request)
            if cached is not None:
                if request.stream and cached.text:
                    await progress_channel.publish(
                        self.runtime.cache, request.id, "text", {"text": cached.text}
                    )
                zero = msgspec.structs.replace(cached, usage=TokenUsage())
                return zero, True, time.perf_counter() - started
        with model_call_span(provider.name, model_request) as span:
            if request.stream:
                model_turn = await self._stream(provider, model_request, request.id, started)
            else:
                model_turn = await provider.complete(model_request)
            record_answer(span, model_turn)
        if self.responses.applies(model_request):
            await self.responses.put(provider.name, model_request, model_turn)
        return model_turn, False, time.perf_counter() - started

    async def _stream(
        self, provider: Provider, model_request: ModelRequest, request_id: str, started: float
    ) -> ModelTurn:
        first = True
        async for item in provider.stream(model_request):
            if isinstance(item, TextDelta):
                if first:
                    metrics.llm_first_token.labels(
                        provider.name, self.chat.model_label(model_request.model)
                    ).observe(time.perf_counter() - started)
                    first = False
                await progress_channel.publish(self.runtime.cache, request_id, "text", {"text": item.text})
            else:
                return item
        raise ProviderError(502, f"{provider.name} stream ended without a message", retryable=False)


def _last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            for block in message.content:
                if isinstance(block, TextBlock) and block.text.strip():
                    return block.text
    return ""


@dataclass
class ChatState:
    """The chat function's state: its loop, once started."""

    loop: ChatLoop | None = None
