"""The chat function's handlers: the two events of the loop, and the HTTP routes that drive and show it.

POST /v1/chat starts the same loop the events run. With a broker
(VICTOR_BROKER_URL or K_SINK) it publishes `ai.victor.chat.requested` and the
steps run wherever the Triggers deliver them; without one, this replica drives
the chain itself, each step through the same event pipeline as a delivery
(idempotency claim, event metrics, span), sending each
`ai.victor.tools.requested` to the tools function (VICTOR_TOOLS_URL) as a
CloudEvent and handling the reply the same way. Through the broker
the caller waits on the request's Redis channel (and, as a backstop when Redis
is quiet or down, on the store), so it learns the outcome whichever replica
ran each step; run here, it awaits the chain itself. A streamed request always
follows the channel, where each step publishes its progress.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec

from common import sse
from common.answers import RETRY_AFTER_SECONDS, Refusal, StreamedAnswer, json_answer
from common.auth import event_credentials
from common.cloudevents import CloudEvent, decode_data, new_event
from common.event_pipeline import process_event
from common.function import Call
from common.runtime import Runtime
from common.store import store_outage
from eventing.client import DeliveryError, publish, send_event
from eventing.schemas.chat import (
    CHAT_COMPLETED,
    CHAT_REQUESTED,
    CONVERSATION_ID,
    ChatFailed,
    ChatRequested,
    MaxTokens,
)
from eventing.schemas.event_type import StoredText
from eventing.schemas.tools import (
    TOOLS_COMPLETED,
    TOOLS_REQUESTED,
    ToolResult,
    ToolsCompleted,
    ToolsRequested,
)
from functions.chat import progress_channel
from functions.chat.conversation_store import ConversationView
from functions.chat.service import ChatLoop, ChatState
from functions.chat.settings import UNCONFIGURED_MESSAGE

log = logging.getLogger(__name__)
# How often a waiter with no news checks the store (covers lost pub/sub messages and Redis outages).
STORE_POLL_SECONDS = 1.0
# HTTP status of a failed request, by its code.
FAILURE_STATUS = {
    "conversation_busy": 409,
    "max_tool_rounds": 422,
    "provider_rejected": 502,
    "provider_error": 502,
    "provider_unreachable": 502,
    "provider_timeout": 504,
    "step_expired": 504,
    "step_failed": 500,
    "store_unavailable": 503,
    "unavailable": 503,
}


class ChatBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of POST /v1/chat."""

    message: Annotated[StoredText, msgspec.Meta(min_length=1, max_length=1_000_000)]
    conversation_id: Annotated[StoredText, msgspec.Meta(min_length=1, max_length=200)] | None = None
    system: StoredText | None = None
    model: Annotated[StoredText, msgspec.Meta(min_length=1, max_length=200)] | None = None
    max_tokens: MaxTokens | None = None
    stream: bool = False


Chat = Runtime[ChatState]


def loop_of(runtime: Chat) -> ChatLoop:
    """The started loop; 503 before start has finished."""
    if runtime.state.loop is None:
        raise Refusal.unavailable("the chat function is starting")
    return runtime.state.loop


async def on_chat_requested(event: CloudEvent, runtime: Chat) -> CloudEvent:
    return await loop_of(runtime).on_chat_requested(event, decode_data(event, ChatRequested))


async def on_tools_completed(event: CloudEvent, runtime: Chat) -> CloudEvent:
    return await loop_of(runtime).on_tools_completed(decode_data(event, ToolsCompleted))


class ChatRun:
    """One POST /v1/chat: starts the loop and follows its progress on the request's channel."""

    def __init__(self, runtime: Chat, body: ChatBody) -> None:
        self.runtime = runtime
        self.loop = loop_of(runtime)
        self.conversation_id = body.conversation_id or str(uuid.uuid4())
        self.request_id = str(uuid.uuid4())
        # The last logged message this client has seen; a resumed stream starts after it.
        self.last_seq = 0
        self.resumed = False
        payload = ChatRequested(
            message=body.message,
            request_id=self.request_id,
            conversation_id=self.conversation_id,
            system=body.system,
            model=body.model,
            max_tokens=body.max_tokens,
            stream=body.stream,
        )
        self.event = new_event(
            CHAT_REQUESTED,
            runtime.source,
            payload,
            id=self.request_id,
            subject=self.conversation_id,
            extensions={CONVERSATION_ID: self.conversation_id},
        )
        self.streamed = body.stream
        self.subscription = progress_channel.Subscription(runtime.cache, self.request_id)
        self.driver: asyncio.Task[progress_channel.StreamMessage] | None = None

    async def start(self) -> None:
        """Hand the request to the broker, or run it here; any subscription is opened first."""
        broker = self.runtime.settings.broker_url
        if broker or self.streamed:
            await self.subscription.open()
        if broker:
            try:
                await publish(self.runtime.http, broker, self.event, event_credentials(self.runtime.settings))
            except DeliveryError as exc:
                await self.subscription.close()
                raise Refusal.unavailable(f"the broker did not accept the chat request: {exc}") from exc
        else:
            self.driver = self.runtime.background(self.drive_here(), f"chat-{self.request_id}")

    async def drive_here(self) -> progress_channel.StreamMessage:
        """Run the chain in this process: each chat step through the event pipeline, as a broker delivery
        would, and tool rounds on the tools function over HTTP."""
        try:
            reply = await self.step(self.event)
            for _ in range(self.loop.chat.max_tool_rounds + 1):
                if reply.type != TOOLS_REQUESTED:
                    break
                reply = await self.step(await self.run_tools(reply))
            return progress_channel.StreamMessage(
                kind="done" if reply.type == CHAT_COMPLETED else "error", data=reply.json()
            )
        except Exception as exc:  # the waiter must hear of every ending, whatever its cause
            log.warning("chat request %s stopped: %s", self.request_id, exc)
            refusal = exc if isinstance(exc, Refusal) else store_outage(exc)
            failed = ChatFailed(
                conversation_id=self.conversation_id,
                request_id=self.request_id,
                code=refusal.code if refusal is not None and refusal.status == 503 else "unavailable",
                error=str(exc) or type(exc).__name__,
            )
            data = msgspec.to_builtins(failed)
            await progress_channel.publish(self.runtime.cache, self.request_id, "error", data)
            return progress_channel.StreamMessage(kind="error", data=data)

    async def step(self, event: CloudEvent) -> CloudEvent:
        reply = await process_event(self.runtime, event)
        if reply is None:  # chat's handlers always reply; a None would be a stored empty answer
            raise Refusal.unavailable(f"the chat step for {event.type} gave no reply")
        return reply

    async def run_tools(self, request: CloudEvent) -> CloudEvent:
        tools_url = self.runtime.settings.function_urls.get("tools")
        if tools_url is None:  # the model named a tool it was not offered; tell it so
            asked = decode_data(request, ToolsRequested)
            results = [
                ToolResult(
                    id=c.id,
                    name=c.name,
                    is_error=True,
                    content="no tools are available (VICTOR_TOOLS_URL is not set)",
                )
                for c in asked.calls
            ]
            payload = ToolsCompleted(conversation_id=asked.conversation_id, turn=asked.turn, results=results)
            return new_event(TOOLS_COMPLETED, "/victor/chat/local", payload)
        reply = await send_event(
            self.runtime.http,
            f"{tools_url}/",
            request,
            timeout=600.0,
            credentials=event_credentials(self.runtime.settings),
        )
        if reply is None or reply.type != TOOLS_COMPLETED:
            raise Refusal.unavailable(f"the tools function did not reply with {TOOLS_COMPLETED}")
        return reply

    @classmethod
    async def resume(cls, runtime: Chat, last_event_id: str) -> ChatRun:
        """The stream of a request already running, from after `Last-Event-ID` (`<request id>:<seq>`);
        404 for a request this store does not know."""
        request_id, _, seq = last_event_id.strip().rpartition(":")
        loop = loop_of(runtime)
        request = await loop.conversations.request(request_id) if request_id and seq.isdigit() else None
        if request is None:
            raise Refusal(
                404,
                f"Last-Event-ID {last_event_id!r} names no chat request; send the message without it",
                "not_found",
            )
        run = cls.__new__(cls)
        run.runtime, run.loop = runtime, loop
        run.conversation_id, run.request_id = request.conversation_id, request.id
        run.last_seq, run.resumed, run.streamed, run.driver = int(seq), True, True, None
        run.subscription = progress_channel.Subscription(runtime.cache, request.id)
        await run.subscription.open()  # before the replay, so nothing falls between the two
        return run

    def _unseen(self, message: progress_channel.StreamMessage) -> bool:
        """Whether the client has not had `message` yet (a replayed message also comes on the channel)."""
        if message.seq:
            if message.seq <= self.last_seq:
                return False
            self.last_seq = message.seq
        return True

    async def progress(self) -> AsyncIterator[progress_channel.StreamMessage]:
        """Progress messages until done or error; ends with an error message at the wait timeout."""
        deadline = time.monotonic() + self.loop.chat.wait_timeout
        try:
            if self.resumed:
                missed = await progress_channel.replay(self.runtime.cache, self.request_id, self.last_seq)
                for earlier in missed or []:
                    if self._unseen(earlier):
                        yield earlier
                        if earlier.kind in progress_channel.FINAL:
                            return
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    yield progress_channel.StreamMessage(kind="error", data=self._timed_out())
                    return
                message = await self.subscription.next(min(STORE_POLL_SECONDS, remaining))
                if message is None:
                    message = await self._from_store()
                if message is None or not self._unseen(message):
                    continue
                yield message
                if message.kind in progress_channel.FINAL:
                    return
        finally:
            await self.subscription.close()

    async def _from_store(self) -> progress_channel.StreamMessage | None:
        """The request's ending as stored; None while it runs, or while PostgreSQL is away (the
        channel may still bring it)."""
        try:
            request = await self.loop.conversations.request(self.request_id)
        except Exception as exc:
            if store_outage(exc) is None:
                raise
            return None
        if request is None or request.status == "running":
            return None
        if request.status == "completed":
            done = await self.loop.conversations.completed(request)
            return progress_channel.StreamMessage(kind="done", data=msgspec.to_builtins(done))
        return progress_channel.StreamMessage(
            kind="error", data=msgspec.to_builtins(self.loop.conversations.failed(request))
        )

    def _timed_out(self) -> dict[str, Any]:
        failed = ChatFailed(
            conversation_id=self.conversation_id,
            request_id=self.request_id,
            code="wait_timeout",
            error=f"no answer within {self.loop.chat.wait_timeout:g}s (VICTOR_CHAT_WAIT_TIMEOUT);"
            f" the request goes on: GET /v1/conversations/{self.conversation_id}",
        )
        return msgspec.to_builtins(failed)  # type: ignore[no-any-return]

    async def outcome(self) -> progress_channel.StreamMessage:
        """The final message (done or error)."""
        if self.driver is not None:  # run here: its own result, no need to go through Redis
            try:
                return await asyncio.wait_for(asyncio.shield(self.driver), self.loop.chat.wait_timeout)
            except TimeoutError:
                return progress_channel.StreamMessage(kind="error", data=self._timed_out())
        final = progress_channel.StreamMessage(kind="error", data=self._timed_out())
        async for message in self.progress():
            if message.kind in progress_channel.FINAL:
                final = message
        return final


def failure_status(data: dict[str, Any]) -> int:
    return FAILURE_STATUS.get(str(data.get("code")), 504 if data.get("code") == "wait_timeout" else 502)


def failure_refusal(data: dict[str, Any], *, extra: Any = None) -> Refusal:
    """The refusal of a failed request (a `ChatFailed` payload): its status by code, its error as the
    message, Retry-After when it may succeed later (503)."""
    status = failure_status(data)
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return Refusal(
        status, str(data.get("error")), str(data.get("code") or "chat_failed"), extra=extra, headers=headers
    )


async def start_chat(runtime: Chat, body: ChatBody) -> ChatRun:
    """Check the request and start its loop: 503 when unconfigured or the broker refuses, 404 for an
    unknown conversation."""
    loop = loop_of(runtime)
    if loop.provider is None:
        raise Refusal.unavailable(UNCONFIGURED_MESSAGE)
    if body.conversation_id is not None and not await loop.conversations.exists(body.conversation_id):
        raise Refusal(
            404,
            f"conversation {body.conversation_id} does not exist; omit conversation_id to start one",
            "not_found",
        )
    run = ChatRun(runtime, body)
    await run.start()
    return run


async def post_chat(call: Call[ChatBody], runtime: Chat) -> Any:
    """The final answer with the tool calls made and the usage; with `stream: true`, SSE events
    `text`, `tool_call`, `tool_result`, then `done` (the same JSON as the plain answer) or `error`,
    each with the id `<request id>:<seq>`, and a `: ping` comment after VICTOR_CHAT_SSE_PING seconds
    of silence. The same request sent again with `Last-Event-ID` resumes that stream instead of
    starting another request."""
    last_event_id = next((v for k, v in call.headers.items() if k.lower() == "last-event-id"), None)
    if last_event_id:
        run = await ChatRun.resume(runtime, last_event_id)
    else:
        run = await start_chat(runtime, call.body)
    headers = {"x-conversation-id": run.conversation_id, "x-request-id": run.request_id}
    if call.body.stream or run.resumed:
        headers = {**headers, "content-type": "text/event-stream", "cache-control": "no-cache"}
        return StreamedAnswer(200, headers, sse.with_pings(_frames(run), run.loop.chat.sse_ping))
    final = await run.outcome()
    if final.kind != "done":
        raise failure_refusal(final.data, extra=final.data)
    return json_answer(200, final.data, headers)


async def _frames(run: ChatRun) -> AsyncIterator[bytes]:
    async for message in run.progress():
        # A message read from the store (Redis quiet or down) carries no number: it repeats the last.
        yield sse.frame(
            msgspec.json.encode(message.data), event=message.kind, id=f"{run.request_id}:{run.last_seq}"
        )


async def get_conversation(call: Call[None], runtime: Chat) -> ConversationView:
    """The stored conversation: messages (content blocks), requests, tool calls, LLM calls, usage."""
    conversation_id = call.params["conversation_id"]
    view = await loop_of(runtime).conversations.view(conversation_id)
    if view is None:
        raise Refusal(404, f"conversation {conversation_id} does not exist", "not_found")
    return view
