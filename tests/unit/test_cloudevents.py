"""The CloudEvents HTTP binding: percent-encoding, binary and structured round trips, errors."""

from __future__ import annotations

import msgspec
import pytest

from common.cloudevents import (
    CloudEvent,
    CloudEventError,
    decode_data,
    from_http,
    new_event,
    percent_decode,
    percent_encode,
    to_binary,
    to_structured,
)

LIMIT = 1 << 20


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("plain-ascii_value.1~", "plain-ascii_value.1~"),
        ("two words", "two%20words"),
        ('say "hi"', "say%20%22hi%22"),
        ("100%", "100%25"),
        ("Euro € sign", "Euro%20%E2%82%AC%20sign"),
        ("café", "caf%C3%A9"),
        ("line\nbreak\ttab", "line%0Abreak%09tab"),
        ("🌎", "%F0%9F%8C%8E"),
    ],
)
def test_percent_encoding_follows_the_http_binding(value: str, encoded: str) -> None:
    assert percent_encode(value) == encoded
    assert percent_decode("ce-x", encoded) == value


@pytest.mark.parametrize(
    "value",
    [
        "Grüße, 世界",
        'a "quoted" 100% value',
        "  leading and trailing  ",
        "%41 is not decoded twice",
        "\u00a0nbsp",
    ],
)
def test_binary_mode_round_trips_any_unicode_attribute(value: str) -> None:
    event = new_event(
        "com.example.sent",
        "/source with space/é",
        {"k": value},
        subject=value,
        extensions={"comexampleext": value},
    )
    headers, body = to_binary(event)
    assert all(header.isascii() for header in headers.values())
    parsed = from_http(headers, body, max_bytes=LIMIT)
    assert parsed == event


def test_structured_mode_round_trips_json_text_and_binary_data() -> None:
    json_event = new_event(
        "t", "/s", {"n": 1, "s": "é"}, extensions={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    )
    text_event = msgspec.structs.replace(json_event, datacontenttype="text/plain", data="hé\n".encode())
    binary_event = msgspec.structs.replace(
        json_event, datacontenttype="application/octet-stream", data=b"\xff\x00"
    )
    for event in (json_event, text_event, binary_event):
        headers, body = to_structured(event)
        assert from_http(headers, body, max_bytes=LIMIT) == event


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("%zz", "invalid percent-encoding"),
        ("abc%4", "invalid percent-encoding"),
        ("%", "invalid percent-encoding"),
        ("%C3%28", "not valid UTF-8"),
        ("%FF", "not valid UTF-8"),
    ],
)
def test_a_bad_escape_is_a_400_naming_the_header(value: str, problem: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-subject": value}
    with pytest.raises(CloudEventError) as raised:
        from_http(headers, b"", max_bytes=LIMIT)
    assert raised.value.status == 400
    assert "ce-subject" in raised.value.message
    assert problem in raised.value.message


def test_raw_latin1_header_bytes_are_read_as_utf8() -> None:
    # Servers hand header bytes over as latin-1 text; unescaped UTF-8 bytes must still decode.
    raw = "é".encode().decode("latin-1")
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-subject": raw}
    assert from_http(headers, b"", max_bytes=LIMIT).subject == "é"


def test_decode_data_names_the_field_that_does_not_fit() -> None:
    class Order(msgspec.Struct):
        quantity: int

    event = new_event("t", "/s", {"quantity": "many"})
    with pytest.raises(CloudEventError) as raised:
        decode_data(event, Order)
    assert raised.value.status == 422
    assert "$.quantity" in raised.value.message
    assert decode_data(new_event("t", "/s", {"quantity": 3}), Order) == Order(quantity=3)


def test_reply_headers_carry_the_content_type_and_no_ce_datacontenttype() -> None:
    event = CloudEvent(id="1", source="/s", type="t", datacontenttype="application/json", data=b"{}")
    headers, body = to_binary(event)
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/s",
        "ce-type": "t",
        "content-type": "application/json",
    }
    assert body == b"{}"


def test_invalid_utf8_inside_json_is_a_400_not_a_crash() -> None:
    # msgspec raises UnicodeDecodeError (not DecodeError) for these bytes; each path must answer 400.
    with pytest.raises(CloudEventError) as structured:
        from_http(
            {"content-type": "application/cloudevents+json"},
            b'{"specversion": "1.0", "id": "\xff"}',
            max_bytes=LIMIT,
        )
    assert (structured.value.status, structured.value.message.split(":")[0]) == (
        400,
        "structured event body is not valid JSON",
    )
    event = CloudEvent(
        id="1", source="/s", type="t", datacontenttype="application/json", data=b'{"k": "\xff"}'
    )
    with pytest.raises(CloudEventError) as data:
        event.json()
    assert data.value.status == 400

    class Anything(msgspec.Struct):
        k: str

    with pytest.raises(CloudEventError) as decoded:
        decode_data(event, Anything)
    assert decoded.value.status == 400
    # Writing such an event out in structured mode keeps the bytes as base64 instead of failing.
    headers, body = to_structured(event)
    assert from_http(headers, body, max_bytes=LIMIT).data == b'{"k": "\xff"}'
