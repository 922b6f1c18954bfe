"""CloudEvents HTTP protocol binding v1.0.2 as pure functions.

No web framework lives here: the Litestar app, the functions-framework entry
point and the local broker all parse and write events with these functions.
Header values are percent-encoded and decoded as the binding requires (the
cloudevents SDK 1.x does not). Every problem with an incoming event raises
`CloudEventError` carrying the HTTP status to answer with.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, unquote_to_bytes

import msgspec

from common.answers import Refusal
from common.json_input import decode_json

SPEC_VERSIONS = ("1.0", "0.3")
REQUIRED = ("id", "source", "type")
CONTEXT_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time"}
)
# v0.3 spelled two context attributes differently; they are read and kept as extensions.
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Printable ASCII except '"' and '%': header values made only of these are sent as they are.
_NEEDS_NO_ENCODING = re.compile(r"[\x21\x23\x24\x26-\x7e]*")
# The same set for quote(), which escapes everything else as %XX of its UTF-8 bytes, upper-case.
_HEADER_SAFE = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in '"%')
# CloudEvents 1.0 "String": no control characters (U+0000-U+001F, U+007F-U+009F), no lone
# surrogates, no noncharacters; a CR or LF let through would become a header of its own when sent.
_NOT_ALLOWED = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane | 0xFFFE)}{chr(plane | 0xFFFF)}" for plane in range(0, 0x110000, 0x10000))
    + "]"
)
# datacontenttype is written unencoded as the Content-Type header: visible ASCII and spaces only.
_NOT_HEADER_TEXT = re.compile(r"[^\x20-\x7e]")
# The CloudEvents Integer type: a signed 32-bit number.
INT32_RANGE = (-(2**31), 2**31 - 1)
_JSON_KINDS = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

T = TypeVar("T")


class CloudEventError(Refusal):
    """An incoming event cannot be accepted; `status` is the HTTP answer (400, 413, 415, 422)."""

    def __init__(self, status: int, message: str, code: str = "invalid_event") -> None:
        super().__init__(status, message, code)


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable CloudEvent: context attributes, extensions and the data as bytes."""

    id: str
    source: str
    type: str
    specversion: str = "1.0"
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    time: str | None = None
    extensions: dict[str, str] = msgspec.field(default_factory=dict)
    data: bytes | None = None

    def attributes(self) -> dict[str, str]:
        """Context attributes and extensions as one flat mapping of strings."""
        attrs = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        for name in ("datacontenttype", "dataschema", "subject", "time"):
            value = getattr(self, name)
            if value is not None:
                attrs[name] = value
        attrs.update(self.extensions)
        return attrs

    def json(self) -> Any:
        """The data decoded as JSON, or None when there is none."""
        if not self.data:
            return None
        try:
            return decode_json(self.data)
        except msgspec.DecodeError as exc:
            raise CloudEventError(400, f"event data is not valid JSON: {exc}") from None

    def with_extensions(self, **extensions: str | None) -> CloudEvent:
        """A copy with these extensions set (a None value removes one)."""
        merged = dict(self.extensions)
        for name, value in extensions.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        return msgspec.structs.replace(self, extensions=merged)


class StructuredEvent(msgspec.Struct, kw_only=True):
    """A CloudEvent in structured mode (the JSON format), as the OpenAPI schemas describe `POST /` and the
    broker ingress; extension attributes are further members. Parsing goes through `from_http`."""

    specversion: Literal["1.0", "0.3"]
    id: Annotated[str, msgspec.Meta(min_length=1)]
    source: Annotated[str, msgspec.Meta(min_length=1)]
    type: Annotated[str, msgspec.Meta(min_length=1)]
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    time: str | None = None
    data: Any = None
    data_base64: str | None = None


# What an event request body may be, by media type: structured mode, or binary mode's data (any JSON).
EVENT_BODY: dict[str, Any] = {STRUCTURED: StructuredEvent, JSON: Any}


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_event(
    type: str,
    source: str,
    data: Any = None,
    *,
    id: str | None = None,
    subject: str | None = None,
    extensions: Mapping[str, str] | None = None,
) -> CloudEvent:
    """A new 1.0 event with JSON data (a msgspec Struct, dict, list or scalar)."""
    for name in extensions or {}:
        _check_extension_name(name)
    return CloudEvent(
        id=id or str(uuid.uuid4()),
        source=source,
        type=type,
        time=now_rfc3339(),
        subject=subject,
        datacontenttype=JSON if data is not None else None,
        extensions=dict(extensions or {}),
        data=msgspec.json.encode(data) if data is not None else None,
    )


def decode_data(event: CloudEvent, model: type[T]) -> T:
    """The event's JSON data as `model`; 400 if not JSON, 422 naming the field if it does not fit."""
    if not event.data:
        raise CloudEventError(422, f"event {event.type} has no data; expected a JSON object", "invalid_data")
    try:
        return decode_json(event.data, model)
    except msgspec.ValidationError as exc:
        raise CloudEventError(422, f"event data does not fit {event.type}: {exc}", "invalid_data") from None
    except msgspec.DecodeError as exc:
        raise CloudEventError(400, f"event data is not valid JSON: {exc}", "invalid_data") from None


# ---------------------------------------------------------------- header encoding


def percent_encode(value: str) -> str:
    """Encode a header value as the HTTP binding requires (3.1.3.2)."""
    if _NEEDS_NO_ENCODING.fullmatch(value):  # the usual case (ids, types, times): nothing to escape
        return value
    return quote(value, safe=_HEADER_SAFE, encoding="utf-8", errors="strict")


def unquote_header(name: str, value: str) -> str:
    """A header value with its RFC 9110 quoted-string unescaped (`"a\\"b"` is `a"b`); others as they are.

    The HTTP binding (3.1.3.2) requires this before percent-decoding, for senders of older versions.
    """
    if not value.startswith('"'):
        return value
    out = []
    escaped = False
    for index, char in enumerate(value[1:], start=1):
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            if index != len(value) - 1:
                break
            return "".join(out)
        else:
            out.append(char)
    raise CloudEventError(400, f"header {name} has an unterminated or malformed quoted string: {value!r}")


def percent_decode(name: str, value: str) -> str:
    """Decode a header value (quoted-string first); 400 on a malformed escape or bytes that are not UTF-8."""
    value = unquote_header(name, value)
    if "%" not in value and value.isascii():  # the usual case: nothing to decode or check
        return value
    if _BAD_PERCENT.search(value):
        raise CloudEventError(400, f"header {name} has an invalid percent-encoding: {value!r}")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raw = value.encode("utf-8")
    try:
        # Bytes, not str: unquote_to_bytes would re-encode a str as UTF-8, doubling latin-1 header bytes.
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise CloudEventError(400, f"header {name} is not valid UTF-8 after percent-decoding") from None


# ---------------------------------------------------------------- parsing


def _lower(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {key.lower(): value for key, value in items}


def is_cloudevent(headers: Mapping[str, str]) -> bool:
    """Whether a request looks like a CloudEvent in binary or structured mode."""
    lowered = _lower(headers)
    return "ce-specversion" in lowered or lowered.get("content-type", "").startswith(STRUCTURED)


def from_http(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes, *, max_bytes: int
) -> CloudEvent:
    """Parse a binary- or structured-mode HTTP request into a CloudEvent."""
    if len(body) > max_bytes:
        raise CloudEventError(413, f"event body is {len(body)} bytes; the limit is {max_bytes}", "too_large")
    lowered = _lower(headers)
    content_type = lowered.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media == BATCH:
        raise CloudEventError(
            415, "batched CloudEvents are not accepted; send one event per request", "unsupported"
        )
    if media == STRUCTURED:
        return _from_structured(body)
    if "ce-specversion" not in lowered:
        raise CloudEventError(
            400,
            "not a CloudEvent: send binary mode (ce-specversion, ce-id, ce-source, ce-type headers) "
            f"or structured mode (Content-Type: {STRUCTURED})",
        )
    attrs: dict[str, str] = {}
    for key, value in lowered.items():
        if key.startswith("ce-") and len(key) > 3:
            attrs[key[3:]] = percent_decode(key, value)
    if content_type:
        attrs["datacontenttype"] = content_type
    return _build(attrs, body if body else None)


def _from_structured(body: bytes) -> CloudEvent:
    try:
        document = decode_json(body)
    except msgspec.DecodeError as exc:
        raise CloudEventError(400, f"structured event body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CloudEventError(400, "structured event body must be a JSON object")
    attrs: dict[str, str] = {}
    for key, value in document.items():
        if key in ("data", "data_base64"):
            continue
        if value is None:
            continue
        if isinstance(value, str):
            attrs[key] = value
        elif key in CONTEXT_ATTRIBUTES:
            # The JSON format: every context attribute is a String (URI-reference, Timestamp) in JSON.
            found = _JSON_KINDS.get(type(value), type(value).__name__)
            raise CloudEventError(400, f"attribute {key} must be a string, got a JSON {found}")
        elif isinstance(value, bool):
            attrs[key] = "true" if value else "false"
        elif isinstance(value, int) and INT32_RANGE[0] <= value <= INT32_RANGE[1]:
            attrs[key] = str(value)
        else:
            # Extensions are String, Boolean or Integer (a JSON number without a fraction, in int32 range).
            raise CloudEventError(400, f"attribute {key} must be a string, an integer or a boolean")
    data: bytes | None = None
    if "data_base64" in document and document["data_base64"] is not None:
        if "data" in document:
            raise CloudEventError(400, "structured event has both data and data_base64")
        try:
            data = base64.b64decode(document["data_base64"], validate=True)
        except (ValueError, TypeError):
            raise CloudEventError(400, "data_base64 is not valid base64") from None
    elif "data" in document:
        value = document["data"]
        media = attrs.get("datacontenttype", JSON).split(";")[0].strip().lower()
        if isinstance(value, str) and not _is_json(media):
            data = value.encode("utf-8")
        else:
            data = msgspec.json.encode(value)
            attrs.setdefault("datacontenttype", JSON)
    return _build(attrs, data)


def _is_json(media: str) -> bool:
    return media == JSON or media.endswith("+json") or media.endswith("/json")


def _build(attrs: dict[str, str], data: bytes | None) -> CloudEvent:
    for name, value in attrs.items():
        _check_attribute_value(name, value)
    if not attrs.get("specversion"):
        state = "empty" if "specversion" in attrs else "missing"
        raise CloudEventError(400, f"required attribute specversion is {state}")
    specversion = attrs.pop("specversion")
    if specversion not in SPEC_VERSIONS:
        raise CloudEventError(
            400, f"unsupported specversion {specversion!r}; expected {' or '.join(SPEC_VERSIONS)}"
        )
    for name in REQUIRED:
        if not attrs.get(name):
            state = "empty" if name in attrs else "missing"
            raise CloudEventError(400, f"required attribute {name} is {state}")
    time = attrs.pop("time", None)
    if time is not None and not _RFC3339.match(time):
        raise CloudEventError(400, f"attribute time is not an RFC 3339 timestamp: {time!r}")
    known = {name: attrs.pop(name) for name in list(attrs) if name in CONTEXT_ATTRIBUTES}
    for name in attrs:
        _check_extension_name(name)
    return CloudEvent(
        specversion=specversion,
        id=known["id"],
        source=known["source"],
        type=known["type"],
        datacontenttype=known.get("datacontenttype") or None,
        dataschema=known.get("dataschema") or None,
        subject=known.get("subject") or None,
        time=time,
        extensions=attrs,
        data=data,
    )


def _check_attribute_value(name: str, value: str) -> None:
    """400 unless `value` is a CloudEvents String that can travel in an HTTP header.

    Refused: control characters (CR and LF included), lone surrogates and noncharacters
    anywhere, and for datacontenttype (sent as Content-Type unencoded) anything but
    visible ASCII and spaces.
    """
    bad = (_NOT_HEADER_TEXT if name == "datacontenttype" else _NOT_ALLOWED).search(value)
    if bad is not None:
        raise CloudEventError(
            400,
            f"attribute {name} contains the character U+{ord(bad.group()):04X}, "
            "which a CloudEvents attribute value must not contain",
        )


def _check_extension_name(name: str) -> None:
    if not _EXTENSION_NAME.match(name):
        raise CloudEventError(
            400, f"attribute name {name!r} is invalid; names are lowercase letters and digits only"
        )


# ---------------------------------------------------------------- writing


def to_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Headers and body for binary mode."""
    headers = {}
    for name, value in event.attributes().items():
        if name == "datacontenttype":
            headers["content-type"] = value
        else:
            headers[f"ce-{name}"] = percent_encode(value)
    return headers, event.data or b""


def to_structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Headers and body for structured mode (JSON format)."""
    document: dict[str, Any] = dict(event.attributes())
    if event.data is not None:
        media = (event.datacontenttype or JSON).split(";")[0].strip().lower()
        if _is_json(media):
            try:
                document["data"] = msgspec.json.decode(event.data)
            except (msgspec.DecodeError, UnicodeDecodeError):
                document["data_base64"] = base64.b64encode(event.data).decode("ascii")
        else:
            try:
                document["data"] = event.data.decode("utf-8")
            except UnicodeDecodeError:
                document["data_base64"] = base64.b64encode(event.data).decode("ascii")
    return {"content-type": f"{STRUCTURED}; charset=utf-8"}, msgspec.json.encode(document)


def to_json(event: CloudEvent) -> bytes:
    """The event in the structured JSON format, for storage (for example a Redis stream)."""
    return to_structured(event)[1]


def from_json(document: bytes) -> CloudEvent:
    """Inverse of `to_json`."""
    return _from_structured(document)
