"""The CloudEvents conformance cases, and invalid events, against the health function in both serving modes.

Each mode (the Litestar app under uvicorn, and functions-framework as a child
process) serves two things: the health function itself, and the same function
with an echo handler for the conformance event types, which replies with what
it parsed. Every case is sent in binary and structured mode.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from common.app import create_app
from common.cloudevents import STRUCTURED, from_http
from common.settings import load_settings
from eventing.schemas.health import HEALTH_REPORTED, PING
from functions.health.function import FUNCTION as SPEC
from tests.support.cloudevents_cases import (
    ECHO_SPEC,
    ECHOED,
    Case,
    bad_attribute_events,
    expected_parse,
    load_cases,
    to_request,
)
from tests.support.foundation import clean_env, functions_framework, serving
from tests.support.servers import running

CASES = load_cases()
MODES = ("binary", "structured")
MAX_EVENT_BYTES = 64 * 1024


def test_every_conformance_file_was_loaded() -> None:
    # 6 + 6 minimum cases, one v0.3 case, and v1.yaml's binary and structured cases.
    assert len(CASES) == 15
    assert {case.attributes["specversion"] for case in CASES} == {"1.0", "0.3"}


@dataclass
class Function:
    health: httpx.AsyncClient
    echo: httpx.AsyncClient


@pytest.fixture(scope="module", params=["litestar", "functions-framework"])
async def function(
    request: pytest.FixtureRequest, services: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Function]:
    """The health function and its echo variant, served the way the parameter names."""
    root = tmp_path_factory.mktemp(f"conformance-{request.param}")
    env = services.env(WORKSPACE_DIR=str(root), VICTOR_MAX_EVENT_BYTES=str(MAX_EVENT_BYTES))
    async with AsyncExitStack() as stack:
        if request.param == "litestar":
            health_url = await stack.enter_async_context(running(create_app(SPEC, load_settings(env))))
            echo_url = await stack.enter_async_context(running(create_app(ECHO_SPEC, load_settings(env))))
        else:
            served = await stack.enter_async_context(
                serving(functions_framework(), clean_env(**env), root / "health.log")
            )
            echo = await stack.enter_async_context(
                serving(
                    functions_framework("tests/support/cloudevents_cases.py", "echo_handle"),
                    clean_env(**env),
                    root / "echo.log",
                )
            )
            health_url, echo_url = served.url, echo.url
        health = await stack.enter_async_context(httpx.AsyncClient(base_url=health_url, timeout=30))
        echo_client = await stack.enter_async_context(httpx.AsyncClient(base_url=echo_url, timeout=30))
        yield Function(health, echo_client)


def ids(case: Case) -> str:
    return case.name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_attributes_extensions_and_data_round_trip_exactly(
    function: Function, case: Case, mode: str
) -> None:
    sent = case.replayed()
    headers, body = to_request(sent, mode)
    response = await function.echo.post("/", headers=headers, content=body)
    assert response.status_code == 200, response.text
    reply = from_http(response.headers, response.content, max_bytes=1 << 20)
    assert (reply.type, reply.subject) == (ECHOED, sent.attributes["id"])
    assert reply.json() == expected_parse(sent, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_the_health_function_refuses_the_case_type_after_parsing_it(
    function: Function, case: Case, mode: str
) -> None:
    headers, body = to_request(case.replayed(), mode)
    response = await function.health.post("/", headers=headers, content=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "status_code": 400,
        "error": "unsupported_event_type",
        "detail": f"function health does not handle events of type {case.attributes['type']!r}; "
        f"it handles: {PING}",
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_the_case_as_a_ping_gets_one_health_reported_reply(
    function: Function, case: Case, mode: str
) -> None:
    sent = case.replayed(PING)
    headers, body = to_request(sent, mode)
    response = await function.health.post("/", headers=headers, content=body)
    assert response.status_code == 200, response.text
    reply = from_http(response.headers, response.content, max_bytes=1 << 20)
    assert (reply.type, reply.source, reply.subject) == (
        HEALTH_REPORTED,
        "/victor/health",
        sent.attributes["id"],
    )
    assert reply.datacontenttype == "application/json"
    assert reply.json()["status"] in ("ok", "degraded")
    # Redelivery of the same event: the stored reply, not a second report.
    again = await function.health.post("/", headers=headers, content=body)
    assert again.status_code == 200
    assert from_http(again.headers, again.content, max_bytes=1 << 20).id == reply.id


# ---------------------------------------------------------------- invalid events


def binary(**changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "ce-specversion": "1.0",
        "ce-id": f"invalid-{uuid.uuid4()}",
        "ce-source": "/test/invalid",
        "ce-type": PING,
        "content-type": "application/json",
    }
    headers.update(changes)
    return {name: value for name, value in headers.items() if value is not None}


def structured(**changes: Any) -> bytes:
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"invalid-{uuid.uuid4()}",
        "source": "/test/invalid",
        "type": PING,
        "data": {"message": "tick"},
    }
    document.update(changes)
    return msgspec.json.encode({name: value for name, value in document.items() if value is not ...})


STRUCTURED_HEADERS = {"content-type": STRUCTURED}
Invalid = tuple[dict[str, str], bytes, int, str, str]
INVALID: dict[str, Invalid] = {}
for attribute in ("id", "source", "type"):
    INVALID[f"binary {attribute} missing"] = (
        binary(**{f"ce-{attribute}": None}),
        b"{}",
        400,
        "invalid_event",
        f"required attribute {attribute} is missing",
    )
    INVALID[f"binary {attribute} empty"] = (
        binary(**{f"ce-{attribute}": ""}),
        b"{}",
        400,
        "invalid_event",
        f"required attribute {attribute} is empty",
    )
    INVALID[f"structured {attribute} missing"] = (
        STRUCTURED_HEADERS,
        structured(**{attribute: ...}),
        400,
        "invalid_event",
        f"required attribute {attribute} is missing",
    )
    INVALID[f"structured {attribute} empty"] = (
        STRUCTURED_HEADERS,
        structured(**{attribute: ""}),
        400,
        "invalid_event",
        f"required attribute {attribute} is empty",
    )
INVALID.update(
    {
        "binary specversion missing": (
            binary(**{"ce-specversion": None}),
            b"{}",
            400,
            "invalid_event",
            "not a CloudEvent",
        ),
        "binary specversion empty": (
            binary(**{"ce-specversion": ""}),
            b"{}",
            400,
            "invalid_event",
            "required attribute specversion is empty",
        ),
        "structured specversion missing": (
            STRUCTURED_HEADERS,
            structured(specversion=...),
            400,
            "invalid_event",
            "required attribute specversion is missing",
        ),
        "binary specversion 2.0": (
            binary(**{"ce-specversion": "2.0"}),
            b"{}",
            400,
            "invalid_event",
            "unsupported specversion '2.0'",
        ),
        "structured specversion 1.1": (
            STRUCTURED_HEADERS,
            structured(specversion="1.1"),
            400,
            "invalid_event",
            "unsupported specversion '1.1'",
        ),
        "bad percent escape": (
            binary(**{"ce-subject": "50%zz off"}),
            b"{}",
            400,
            "invalid_event",
            "header ce-subject has an invalid percent-encoding",
        ),
        "truncated percent escape": (
            binary(**{"ce-source": "/test/%4"}),
            b"{}",
            400,
            "invalid_event",
            "header ce-source has an invalid percent-encoding",
        ),
        "invalid UTF-8 after decoding": (
            binary(**{"ce-subject": "caf%C3%28"}),
            b"{}",
            400,
            "invalid_event",
            "header ce-subject is not valid UTF-8 after percent-decoding",
        ),
        "lone continuation byte": (
            binary(**{"ce-comexampleext": "%80"}),
            b"{}",
            400,
            "invalid_event",
            "header ce-comexampleext is not valid UTF-8",
        ),
        "bad extension name": (
            binary(**{"ce-bad_name": "x"}),
            b"{}",
            400,
            "invalid_event",
            "attribute name 'bad_name' is invalid",
        ),
        "time not RFC 3339": (
            binary(**{"ce-time": "yesterday"}),
            b"{}",
            400,
            "invalid_event",
            "attribute time is not an RFC 3339 timestamp",
        ),
        "structured body not JSON": (
            STRUCTURED_HEADERS,
            b'{"specversion": "1.0", ',
            400,
            "invalid_event",
            "structured event body is not valid JSON",
        ),
        "structured body invalid UTF-8": (
            STRUCTURED_HEADERS,
            b'{"specversion": "1.0", "id": "\xff"}',
            400,
            "invalid_event",
            "structured event body is not valid JSON",
        ),
        "structured body an array": (
            STRUCTURED_HEADERS,
            b"[]",
            400,
            "invalid_event",
            "structured event body must be a JSON object",
        ),
        "structured body a string": (
            STRUCTURED_HEADERS,
            b'"event"',
            400,
            "invalid_event",
            "structured event body must be a JSON object",
        ),
        "structured attribute an object": (
            STRUCTURED_HEADERS,
            structured(subject={"a": 1}),
            400,
            "invalid_event",
            "attribute subject must be a string",
        ),
        "structured bad data_base64": (
            STRUCTURED_HEADERS,
            structured(data=..., data_base64="***"),
            400,
            "invalid_event",
            "data_base64 is not valid base64",
        ),
        "plain JSON, not an event": (
            {"content-type": "application/json"},
            b'{"hello": "world"}',
            400,
            "invalid_event",
            "not a CloudEvent",
        ),
        "batch mode": (
            {"content-type": "application/cloudevents-batch+json"},
            b"[]",
            415,
            "unsupported",
            "batched CloudEvents are not accepted",
        ),
        "binary body over the limit": (
            binary(),
            b"x" * (MAX_EVENT_BYTES + 1),
            413,
            "too_large",
            f"over the limit of {MAX_EVENT_BYTES} bytes",
        ),
        "structured body over the limit": (
            STRUCTURED_HEADERS,
            structured(data="x" * MAX_EVENT_BYTES),
            413,
            "too_large",
            f"over the limit of {MAX_EVENT_BYTES} bytes",
        ),
    }
)
INVALID.update(
    {
        bad.name: (bad.headers, bad.body, 400, "invalid_event", bad.detail)
        for bad in bad_attribute_events(PING)
    }
)


@pytest.mark.parametrize(
    ("headers", "body", "status", "code", "detail"), INVALID.values(), ids=INVALID.keys()
)
async def test_an_invalid_event_gets_a_json_4xx_naming_the_problem(
    function: Function, headers: dict[str, str], body: bytes, status: int, code: str, detail: str
) -> None:
    response = await function.health.post("/", headers=headers, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert (answer["status_code"], answer["error"]) == (status, code)
    assert detail in answer["detail"]


async def test_a_structured_event_with_base64_data_keeps_the_bytes(function: Function) -> None:
    raw = bytes(range(256))
    sent = {
        "specversion": "1.0",
        "id": f"binary-data-{uuid.uuid4()}",
        "source": "/test/base64",
        "type": "io.cloudevents.minimum",
        "datacontenttype": "application/octet-stream",
        "data_base64": base64.b64encode(raw).decode(),
    }
    response = await function.echo.post("/", headers=STRUCTURED_HEADERS, content=msgspec.json.encode(sent))
    assert response.status_code == 200
    echoed = from_http(response.headers, response.content, max_bytes=1 << 20).json()
    assert base64.b64decode(echoed["data_base64"]) == raw
    assert echoed["attributes"] == {key: value for key, value in sent.items() if key != "data_base64"}
