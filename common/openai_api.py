"""What OpenAI-compatible routes share (chat's and embeddings'): the error envelope and the model list.

Errors on those routes use OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`
with the refusal's status and headers, so OpenAI's SDKs raise their usual exceptions; every
other route keeps Victor's error body (`common.answers`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from common.answers import Answer, Refusal, json_answer

# The OpenAI error type each status family gets (clients branch on it).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(message: str, kind: str, code: str) -> dict[str, Any]:
    return {"message": message, "type": kind, "param": None, "code": code}


def openai_refusal(refusal: Refusal) -> Answer:
    """A refusal in OpenAI's error envelope, with the same status and headers."""
    kind = ERROR_TYPES.get(
        refusal.status, "server_error" if refusal.status >= 500 else "invalid_request_error"
    )
    return json_answer(
        refusal.status, {"error": error_body(refusal.message, kind, refusal.code)}, refusal.headers
    )


class ModelCard(msgspec.Struct, kw_only=True):
    """One entry of `GET /v1/models`, as OpenAI lists a model."""

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "victor"


class ModelList(msgspec.Struct, kw_only=True):
    """The body of `GET /v1/models`."""

    data: list[ModelCard]
    object: str = "list"
