"""The one way JSON from outside is decoded: request bodies, CloudEvents and their data, tool arguments.

`decode_json` is `msgspec.json.decode` with two more refusals, so nothing a
client sends fails later, deeper in, as a 500; both raise `msgspec.DecodeError`,
which callers answer with their 400 (as `msgspec.ValidationError`, a document
that does not fit, gets their 422):

- not UTF-8 (msgspec itself reports it as `UnicodeDecodeError`);
- arrays and objects nested more than `MAX_DEPTH` deep (msgspec would recurse
  until Python's stack limit, and a deep document could not be stored or
  re-encoded anywhere else either).

A document that is both (a misfit first, a syntax error further on) is answered as not JSON.

Strings that PostgreSQL must store refuse U+0000 by their Struct constraint
(`eventing.schemas.event_type.StoredText`).
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import msgspec

T = TypeVar("T")
# Arrays and objects inside one another; far above any payload here (the deepest is about 6).
MAX_DEPTH = 64


@overload
def decode_json(document: bytes) -> Any: ...
@overload
def decode_json(document: bytes, model: type[T]) -> T: ...
def decode_json(document: bytes, model: Any = Any) -> Any:
    """`document` decoded as `model`; `msgspec.DecodeError` when it is not acceptable JSON,
    `msgspec.ValidationError` (naming the place) when it does not fit `model`."""
    # Only a document with that many brackets can be that deep: most are never walked.
    if document.count(b"[") + document.count(b"{") > MAX_DEPTH:
        _check_depth(_decode(document, Any))
    try:
        return _decode(document, model)
    except msgspec.ValidationError:
        if model is not Any:  # msgspec stops at the first misfit, perhaps before a syntax error further on
            _decode(document, Any)
        raise


def _decode(document: bytes, model: Any) -> Any:
    try:
        return msgspec.json.decode(document, type=model)
    except UnicodeDecodeError as exc:
        raise msgspec.DecodeError(f"the document is not UTF-8: {exc}") from None
    except RecursionError:
        raise msgspec.DecodeError(_too_deep()) from None


def _too_deep() -> str:
    return f"arrays and objects are nested more than {MAX_DEPTH} deep"


def _check_depth(value: Any) -> None:
    """`msgspec.DecodeError` when `value` nests arrays and objects more than MAX_DEPTH deep."""
    level: list[Any] = [value]
    for _ in range(MAX_DEPTH):
        inner: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                inner.extend(node.values())
            elif isinstance(node, list):
                inner.extend(node)
        level = [node for node in inner if isinstance(node, dict | list)]
        if not level:
            return
    raise msgspec.DecodeError(_too_deep())
