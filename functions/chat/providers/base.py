"""The one interface every LLM provider implements, and the retry policy they share.

Messages use Anthropic's content-block shape (text, tool_use, tool_result) as the
neutral form: it is what the conversation store keeps, and the OpenAI-compatible
provider translates it to chat-completions messages and back.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, Protocol, TypeVar

import msgspec
from opentelemetry.trace import Span, SpanKind, StatusCode

from common import tracing
from functions.chat.settings import ChatSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class TextBlock(msgspec.Struct, kw_only=True, tag="text", tag_field="type"):
    text: str


class ToolUseBlock(msgspec.Struct, kw_only=True, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(msgspec.Struct, kw_only=True, tag="tool_result", tag_field="type"):
    tool_use_id: str
    content: str
    is_error: bool = False


Block = TextBlock | ToolUseBlock | ToolResultBlock


class Message(msgspec.Struct, kw_only=True):
    role: Literal["user", "assistant"]
    content: list[Block]


class ToolSpec(msgspec.Struct, kw_only=True):
    """A tool offered to the model: its name, description and JSON schema of its input."""

    name: str
    description: str
    input_schema: dict[str, Any]


class ModelRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[Message]
    max_tokens: int
    system: str | None = None
    tools: list[ToolSpec] = msgspec.field(default_factory=list)
    temperature: float | None = None


class TokenUsage(msgspec.Struct, kw_only=True):
    """Tokens of one call; `input_tokens` excludes cached input, as Anthropic reports it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class ModelTurn(msgspec.Struct, kw_only=True):
    """What the model said in one call."""

    content: list[Block]
    stop_reason: str  # Anthropic's words (end_turn, tool_use, max_tokens), whichever provider answered
    usage: TokenUsage
    model: str
    finish_reason: str = ""  # the provider's own words, as the GenAI span reports them ("": stop_reason)

    @property
    def text(self) -> str:
        return "".join(block.text for block in self.content if isinstance(block, TextBlock))

    @property
    def tool_uses(self) -> list[ToolUseBlock]:
        return [block for block in self.content if isinstance(block, ToolUseBlock)]


class TextDelta(msgspec.Struct, kw_only=True):
    """A piece of streamed text."""

    text: str


class ProviderError(Exception):
    """The provider failed for good: `status` is its HTTP status (0: no answer), `message` its error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self._code = code

    @property
    def code(self) -> str:
        if self._code is not None:
            return self._code
        if self.status == 0:
            return "provider_unreachable"
        if self.status == 408:
            return "provider_timeout"
        return "provider_rejected" if not self.retryable else "provider_error"


class Provider(Protocol):
    """One LLM API. `complete` returns the whole turn; `stream` yields text deltas, then the turn."""

    name: str

    async def complete(self, request: ModelRequest) -> ModelTurn: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelTurn]: ...

    async def close(self) -> None: ...


def is_retryable_status(status: int) -> bool:
    """429 (rate limited), 529 (overloaded) and every 5xx are worth retrying; other 4xx are not."""
    return status == 429 or status >= 500


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait from retry-after-ms or retry-after (seconds), if given."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
        if seconds >= 0:
            return seconds
    return None


class SDKErrors(msgspec.Struct, frozen=True):
    """How one provider's SDK signals failure, and how its errors are worded.

    The Anthropic and OpenAI SDKs share one error hierarchy (APIError with timeout,
    connection and status subclasses), so one mapping serves both.
    """

    base: type[Any]
    timeout: type[Any]
    connection: type[Any]
    status: type[Any]
    server: str  # who answered, as errors name it: "Anthropic", "the OpenAI-compatible server"
    stream: str  # what failed mid-stream: "Anthropic stream", "the OpenAI-compatible stream"
    detail: Callable[[Any], str]  # the server's own words from a status error

    @classmethod
    def of(cls, sdk: Any, *, server: str, stream: str, detail: Callable[[Any], str]) -> SDKErrors:
        """The errors of an SDK module (`anthropic`, `openai`): both name them alike."""
        return cls(
            base=sdk.APIError,
            timeout=sdk.APITimeoutError,
            connection=sdk.APIConnectionError,
            status=sdk.APIStatusError,
            server=server,
            stream=stream,
            detail=detail,
        )


def sdk_error(exc: Any, errors: SDKErrors) -> ProviderError:
    """The SDK's error as a `ProviderError` carrying the provider's own message."""
    if isinstance(exc, errors.timeout):
        return ProviderError(408, f"{errors.server} did not answer within the timeout", retryable=False)
    if isinstance(exc, errors.connection):
        return ProviderError(0, f"cannot reach {errors.server}: {exc.message}", retryable=True)
    # An error event inside an SSE stream (Anthropic's overloaded_error) is a status error of the
    # stream's own 200 answer: it falls through to the stream failure below.
    if isinstance(exc, errors.status) and exc.status_code >= 400:
        status = exc.status_code
        return ProviderError(
            status,
            f"{errors.server} answered {status}: {errors.detail(exc)}",
            retryable=is_retryable_status(status),
            retry_after=retry_after_seconds(exc.response.headers),
        )
    return ProviderError(502, f"{errors.stream} failed: {exc.message}", retryable=False)


def malformed_answer(server: str, exc: Exception) -> ProviderError:
    """A 200 answer the SDK could not read as the API's (a JSON body to a streaming request, garbage
    SSE, a message with fields missing): a provider error, 502, not retried."""
    detail = f"{type(exc).__name__}: {str(exc)[:300]}" if str(exc) else type(exc).__name__
    return ProviderError(
        502,
        f"{server} sent an answer that is not a valid API response ({detail})",
        retryable=False,
        code="provider_error",
    )


class SDKProvider:
    """What the SDK-backed providers share: the client's lifetime and the retry policy.

    The SDKs' own retries are off (`max_retries=0`) so that `with_retries` governs
    every provider; `retried` runs one SDK call under it, its errors mapped first.
    """

    name: str
    errors: SDKErrors
    client: Any

    def __init__(self, chat: ChatSettings) -> None:
        self.chat = chat
        # Hears of each retry (the error and the wait); tests and metrics use it.
        self.on_retry: Callable[[ProviderError, float], None] | None = None

    async def close(self) -> None:
        await self.client.close()

    async def retried(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` (an SDK call and the reading of its answer) under the retry policy; whatever it
        raises comes out as a `ProviderError`."""

        async def attempt() -> T:
            try:
                return await call()
            except ProviderError:
                raise
            except Exception as exc:
                raise self.mapped(exc) from exc

        return await with_retries(self.chat, self.name, attempt, self.on_retry)

    def mapped(self, exc: Exception) -> ProviderError:
        """An error raised by the SDK, or while reading its answer, as a `ProviderError`: the SDK's own
        errors by their kind, anything else as a malformed answer."""
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, self.errors.base):
            return sdk_error(exc, self.errors)
        return malformed_answer(self.errors.server, exc)


async def with_retries(
    settings: ChatSettings,
    provider: str,
    attempt: Callable[[], Awaitable[T]],
    on_retry: Callable[[ProviderError, float], None] | None = None,
) -> T:
    """Run `attempt`, retrying retryable `ProviderError`s with exponential backoff.

    The wait is the provider's retry-after when it sends one (capped at
    `retry_max_wait`), else 0.5 s doubling with jitter. After `max_retries`
    retries the last error is raised. `on_retry` hears of each retry and its wait.
    """
    for number in range(settings.max_retries + 1):
        try:
            return await attempt()
        except ProviderError as error:
            if not error.retryable or number >= settings.max_retries:
                raise
            wait = error.retry_after
            if wait is None:
                wait = min(0.5 * 2**number, settings.retry_max_wait) * (0.5 + random.random() / 2)
            wait = min(wait, settings.retry_max_wait)
            log.warning(
                "%s answered %s (%s); retry %d of %d in %.3fs",
                provider,
                error.status,
                error.message[:200],
                number + 1,
                settings.max_retries,
                wait,
            )
            if on_retry is not None:
                on_retry(error, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises on its last attempt


@contextmanager
def model_call_span(provider: str, request: ModelRequest) -> Iterator[Span]:
    """The span of one LLM call (its retries included), with the OpenTelemetry GenAI attributes.

    `record_answer(span, turn)` adds the response's; a failure sets `error.type` (the
    `ProviderError` code, else the exception's class) and the error status.
    """
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the attribute's name before semantic conventions 1.37
        "gen_ai.request.model": request.model,
        "gen_ai.request.max_tokens": request.max_tokens,
    }
    if request.temperature is not None:
        attributes["gen_ai.request.temperature"] = request.temperature
    with tracing.tracer(__name__).start_as_current_span(
        f"chat {request.model}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            error = exc.code if isinstance(exc, ProviderError) else type(exc).__qualname__
            span.set_attribute("error.type", error)
            span.set_status(StatusCode.ERROR, exc.message if isinstance(exc, ProviderError) else None)
            raise


def record_answer(span: Span, turn: ModelTurn) -> None:
    """The GenAI response attributes of `turn`: model, finish reason and tokens.

    `gen_ai.usage.input_tokens` counts every input token, cached ones included, as the conventions
    ask (Anthropic reports cache reads and writes apart); the cached parts have their own attributes.
    """
    usage = turn.usage
    span.set_attributes(
        {
            "gen_ai.response.model": turn.model,
            "gen_ai.response.finish_reasons": [turn.finish_reason or turn.stop_reason],
            "gen_ai.usage.input_tokens": usage.input_tokens
            + usage.cache_read_tokens
            + usage.cache_write_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
            "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
        }
    )
