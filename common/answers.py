"""What a function answers, independent of any web framework: the one refusal type and the one error body.

Every "cannot serve this" in every function and both serving modes is a `Refusal`
(HTTP status, error code, one-sentence message); `refusal_answer` makes its JSON
body `{"status_code", "error", "detail"[, "extra"]}`, the same for HTTP routes and
for delivered CloudEvents. Request bodies follow one rule (`decode_body`): 400
`invalid_json` when the body is not JSON, 422 `invalid_request` naming the field
when it is JSON that does not fit the route's Struct.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import msgspec

from common.json_input import decode_json

T = TypeVar("T")
JSON = "application/json"
# How long a client or the broker should wait before retrying a 503.
RETRY_AFTER_SECONDS = 5


class Refusal(Exception):
    """A request or event that is not served: `status`, a stable `code` and a one-sentence `message`.

    4xx refusals are poison to the broker (not retried, except 404/408/409/429);
    5xx ones are retried. Without a code, the status's phrase is the code
    (409 → "conflict"). `extra` is added to the error body as is.
    """

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        extra: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or status_code_name(status)
        self.extra = extra
        self.headers = dict(headers or {})

    @classmethod
    def unavailable(cls, message: str, code: str = "unavailable") -> Refusal:
        """503: cannot serve now but may later (the broker retries; clients get Retry-After)."""
        return cls(503, message, code, headers={"retry-after": str(RETRY_AFTER_SECONDS)})


def status_code_name(status: int) -> str:
    """The error code a bare status gets: its phrase in snake case ("Bad Gateway" → "bad_gateway")."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return phrase.lower().replace(" ", "_").replace("-", "_")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer with its whole body, independent of any web framework."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class StreamedAnswer:
    """An HTTP answer whose body is sent as `chunks` yields it (Server-Sent Events)."""

    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes] = field(repr=False)


def json_answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Answer:
    """`body` (dicts, lists, msgspec Structs) as a JSON answer."""
    return Answer(status, {"content-type": JSON, **(headers or {})}, msgspec.json.encode(body))


def refusal_body(refusal: Refusal) -> dict[str, Any]:
    """The one JSON error body: `status_code`, `error` (the code), `detail`, and `extra` when given."""
    body: dict[str, Any] = {"status_code": refusal.status, "error": refusal.code, "detail": refusal.message}
    if refusal.extra:
        body["extra"] = refusal.extra
    return body


def refusal_answer(refusal: Refusal) -> Answer:
    """The one JSON error body as an answer, for routes and events alike."""
    return json_answer(refusal.status, refusal_body(refusal), refusal.headers)


def error_answer(status: int, code: str, message: str) -> Answer:
    return refusal_answer(Refusal(status, message, code))


# 500 for an unexpected failure: points at the logs, never a traceback.
INTERNAL_ERROR = Refusal(500, "the request failed; see the function's logs", "internal_error")


def internal_error_answer() -> Answer:
    """500 for an unexpected failure: a JSON body that points at the logs, never a traceback."""
    return refusal_answer(INTERNAL_ERROR)


def not_found_answer(path: str) -> Answer:
    """404 for a path no route serves, the same in every serving mode."""
    return error_answer(404, "not_found", f"no route {path}")


def method_not_allowed_answer(path: str, allowed: Sequence[str]) -> Answer:
    """405 naming the methods `path` accepts (also in the Allow header)."""
    methods = ", ".join(sorted(allowed))
    return refusal_answer(
        Refusal(405, f"{path} accepts {methods}", "method_not_allowed", headers={"allow": methods})
    )


def too_large(limit: int) -> Refusal:
    """413 for a request body over VICTOR_MAX_EVENT_BYTES, the same in every serving mode."""
    return Refusal(
        413, f"the request body is over the limit of {limit} bytes (VICTOR_MAX_EVENT_BYTES)", "too_large"
    )


def decode_body(body: bytes, model: type[T]) -> T:
    """The JSON body as `model` (`common.json_input` rules): 400 `invalid_json` if not JSON (or not UTF-8,
    or nested too deep), 422 `invalid_request` naming the field that does not fit or holds a NUL."""
    body = body or b"{}"
    try:
        return decode_json(body, model)
    except msgspec.ValidationError as exc:
        raise Refusal(422, f"invalid request body: {exc}", "invalid_request") from None
    except msgspec.DecodeError as exc:
        raise Refusal(400, f"the request body is not valid JSON: {exc}", "invalid_json") from None
