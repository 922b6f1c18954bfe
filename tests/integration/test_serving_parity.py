"""Both serving modes answer every bad request alike, for every function.

Each function is served from its one declaration twice, under Litestar (`victor
serve`) and under functions-framework (`--asgi --target handle`), with the same
settings. The same corpus of bad requests (bad JSON, wrong types, missing and
unknown fields, wrong methods, unknown paths, over-long bodies, bad CloudEvents,
unsupported event types, a missing API key) goes to both; the status, the error
code and, for `POST /`, the reply rule (202 empty or 200 with one CloudEvent)
must be the same.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from common.app import create_app
from common.cloudevents import from_http
from common.function import FunctionSpec
from common.settings import Settings
from eventing.schemas.chat import CHAT_REQUESTED
from eventing.schemas.embeddings import EMBEDDINGS_REQUESTED, INDEX_REQUESTED, SEARCH_REQUESTED
from eventing.schemas.health import PING
from eventing.schemas.tools import TOOLS_COMPLETED, TOOLS_REQUESTED
from functions.chat.function import build_function as chat_function
from functions.embeddings.function import build_function as embeddings_function
from functions.embeddings.settings import load_embedding_settings
from functions.health.function import FUNCTION as HEALTH
from functions.tools.function import build_function as tools_function
from functions.tools.settings import ToolsSettings
from tests.support.chat import chat_settings
from tests.support.cloudevents_cases import bad_attribute_events
from tests.support.embeddings import minilm, minilm_directory, wait_started  # noqa: F401 - fixtures
from tests.support.foundation import ROOT, clean_env
from tests.support.oidc import issuer as oidc_issuer
from tests.support.oidc import rsa_key
from tests.support.servers import running, running_target

KEY = "parity-key-0123456789"
LIMIT = 4096  # VICTOR_MAX_EVENT_BYTES


@dataclass(frozen=True)
class Bad:
    """One request of the corpus; `keyed` sends the API key, `json` a JSON body, `content` raw bytes."""

    name: str
    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    keyed: bool = True
    # The exact (status, code) both modes must answer, where the case pins it.
    expected: tuple[Any, ...] | None = None


def event(event_type: str, data: bytes | None = b"{}", **extra: str) -> dict[str, str]:
    """Binary-mode headers of an event (the id is filled in per request, so each mode gets a fresh one)."""
    headers = {"ce-specversion": "1.0", "ce-source": "/test/parity", "ce-type": event_type, **extra}
    if data is not None:
        headers["content-type"] = "application/json"
    return headers


# Bad input that used to reach msgspec's recursion, PostgreSQL or an encoder and come back as a 500.
DEEP = 1500  # arrays inside one another: over Python's recursion limit, under LIMIT bytes


def deep(name: str) -> bytes:
    """A JSON object whose member `name` nests arrays DEEP levels deep."""
    return b'{"%s": %s%s}' % (name.encode(), b"[" * DEEP, b"]" * DEEP)


def not_utf8(name: str, **members: Any) -> bytes:
    """A JSON object whose string member `name` holds a Latin-1 byte (not UTF-8), beside `members`."""
    return (
        msgspec.json.encode(members)[:-1] + (b", " if members else b"") + b'"%s": "caf\xe9"}' % name.encode()
    )


NOT_JSON = (400, "invalid_json")
NOT_FIT = (422, "invalid_request")
BAD_DATA = (400, "invalid_data")
DATA_NOT_FIT = (422, "invalid_data")
BAD_EVENT = (400, "invalid_event")
STRUCTURED = {"content-type": "application/cloudevents+json"}


def shared_corpus(own_type: str) -> list[Bad]:
    """What every function gets: unknown paths, wrong methods, bad and unsupported events, big bodies."""
    return [
        Bad("unknown path", "GET", "/v2/nothing"),
        Bad("unknown nested path", "POST", "/v1/nothing/at/all", json={}),
        Bad("DELETE a probe", "DELETE", "/health/live"),
        Bad("POST to /health", "POST", "/health", json={}),
        Bad("PUT /metrics", "PUT", "/metrics"),
        Bad("GET /", "GET", "/"),
        Bad("no CloudEvent at all", "POST", "/", content=b""),
        Bad("event without type", "POST", "/", content=b"{}", headers=event(own_type, **{"ce-type": ""})),
        Bad(
            "event of version 2.0",
            "POST",
            "/",
            content=b"{}",
            headers=event(own_type, **{"ce-specversion": "2.0"}),
        ),
        Bad(
            "structured event that is not JSON",
            "POST",
            "/",
            content=b"{not json",
            headers={"content-type": "application/cloudevents+json"},
        ),
        Bad(
            "structured event without id",
            "POST",
            "/",
            json={"specversion": "1.0", "source": "/s", "type": own_type},
            headers={"content-type": "application/cloudevents+json"},
        ),
        Bad("unsupported event type", "POST", "/", content=b"{}", headers=event("com.example.other")),
        Bad("over-long event", "POST", "/", content=b"x" * (LIMIT + 1), headers=event(own_type)),
        Bad("event with data that is not JSON", "POST", "/", content=b"{oops", headers=event(own_type)),
        Bad("event with data of the wrong shape", "POST", "/", content=b"[1, 2]", headers=event(own_type)),
        Bad(
            "event with double-quoted attributes and data of the wrong shape",
            "POST",
            "/",
            content=b"[1, 2]",
            headers=event(own_type, **{"ce-type": f'"{own_type}"', "ce-source": '"/test/parity"'}),
        ),
        *(
            Bad(bad.name, "POST", "/", content=bad.body, headers=bad.headers)
            for bad in bad_attribute_events(own_type)
        ),
        Bad(
            "structured event nested deep",
            "POST",
            "/",
            content=deep("data")[:-1] + b', "specversion": "1.0", "id": "1", "source": "/s", "type": "t"}',
            headers=STRUCTURED,
            expected=BAD_EVENT,
        ),
        Bad(
            "structured event not UTF-8",
            "POST",
            "/",
            content=not_utf8("data", specversion="1.0", id="1", source="/s", type=own_type),
            headers=STRUCTURED,
            expected=BAD_EVENT,
        ),
        Bad(
            "structured event with a NUL in its id",
            "POST",
            "/",
            json={"specversion": "1.0", "id": "a\x00b", "source": "/s", "type": own_type},
            headers=STRUCTURED,
            expected=BAD_EVENT,
        ),
        Bad(
            "binary event with a NUL in its source",
            "POST",
            "/",
            content=b"{}",
            headers=event(own_type, **{"ce-source": "/a%00b"}),
            expected=BAD_EVENT,
        ),
    ]


COMPLETION = {"model": "victor", "messages": [{"role": "user", "content": "hello"}]}
CHAT = [
    Bad("chat without a provider", "POST", "/v1/chat", json={"message": "hello"}),
    Bad("chat without the API key", "POST", "/v1/chat", json={"message": "hello"}, keyed=False),
    Bad("chat body not JSON", "POST", "/v1/chat", content=b"{message"),
    Bad("chat message of the wrong type", "POST", "/v1/chat", json={"message": 3}),
    Bad("chat without message", "POST", "/v1/chat", json={}),
    Bad("chat with an unknown field", "POST", "/v1/chat", json={"message": "x", "temperature": 2}),
    Bad("chat with max_tokens 0", "POST", "/v1/chat", json={"message": "x", "max_tokens": 0}),
    Bad("chat body a list", "POST", "/v1/chat", json=["x"]),
    Bad("chat over-long body", "POST", "/v1/chat", content=b"x" * (LIMIT + 1)),
    Bad("GET /v1/chat", "GET", "/v1/chat"),
    Bad("unknown conversation", "GET", "/v1/conversations/never-started"),
    Bad("DELETE a conversation", "DELETE", "/v1/conversations/never-started"),
    Bad("conversation without the API key", "GET", "/v1/conversations/x", keyed=False),
    Bad(
        "chat.requested without provider",
        "POST",
        "/",
        content=b'{"message": "hi"}',
        headers=event(CHAT_REQUESTED),
    ),
    Bad(
        "tools.completed for no round",
        "POST",
        "/",
        json={"conversation_id": "never", "turn": 3, "results": []},
        headers=event(TOOLS_COMPLETED),
    ),
    Bad("MCP is not chat's", "POST", "/mcp", json={}),
    Bad("completions without a provider", "POST", "/v1/chat/completions", json=COMPLETION),
    Bad("completions without the API key", "POST", "/v1/chat/completions", json=COMPLETION, keyed=False),
    Bad("completions body not JSON", "POST", "/v1/chat/completions", content=b"{model"),
    Bad("completions without messages", "POST", "/v1/chat/completions", json={"model": "victor"}),
    Bad("completions of no messages", "POST", "/v1/chat/completions", json={**COMPLETION, "messages": []}),
    Bad("completions of another model", "POST", "/v1/chat/completions", json={**COMPLETION, "model": "gpt"}),
    Bad("completions over-long body", "POST", "/v1/chat/completions", content=b"x" * (LIMIT + 1)),
    Bad("GET /v1/chat/completions", "GET", "/v1/chat/completions"),
    Bad("models without the API key", "GET", "/v1/models", keyed=False),
    Bad("POST /v1/models", "POST", "/v1/models", json={}),
    Bad("chat message not UTF-8", "POST", "/v1/chat", content=not_utf8("message"), expected=NOT_JSON),
    Bad("chat nested deep", "POST", "/v1/chat", content=deep("message"), expected=NOT_JSON),
    *(
        Bad(
            f"chat with a NUL in {name}",
            "POST",
            "/v1/chat",
            json={"message": "hi", name: "a\x00"},
            expected=NOT_FIT,
        )
        for name in ("message", "model", "system", "conversation_id")
    ),
    Bad("conversation id with a NUL", "GET", "/v1/conversations/a%00b", expected=(400, "invalid_path")),
    Bad(
        "completions not UTF-8",
        "POST",
        "/v1/chat/completions",
        content=not_utf8("model"),
        expected=(400, "invalid_request_error/invalid_json"),
    ),
    Bad(
        "completions nested deep",
        "POST",
        "/v1/chat/completions",
        content=deep("messages"),
        expected=(400, "invalid_request_error/invalid_json"),
    ),
    Bad(
        "completions with a NUL in a message",
        "POST",
        "/v1/chat/completions",
        json={"model": "victor", "messages": [{"role": "user", "content": "a\x00"}]},
        expected=(422, "invalid_request_error/invalid_request"),
    ),
    Bad(
        "completions with a NUL in a content part",
        "POST",
        "/v1/chat/completions",
        json={
            "model": "victor",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "\x00"}]}],
        },
        expected=(422, "invalid_request_error/invalid_request"),
    ),
    Bad(
        "chat.requested not UTF-8",
        "POST",
        "/",
        content=not_utf8("message"),
        headers=event(CHAT_REQUESTED),
        expected=BAD_DATA,
    ),
    Bad(
        "chat.requested nested deep",
        "POST",
        "/",
        content=deep("message"),
        headers=event(CHAT_REQUESTED),
        expected=BAD_DATA,
    ),
    *(
        Bad(
            f"chat.requested with a NUL in {name}",
            "POST",
            "/",
            json={"message": "hi", name: "a\x00"},
            headers=event(CHAT_REQUESTED),
            expected=DATA_NOT_FIT,
        )
        for name in ("message", "model", "system", "conversation_id", "request_id")
    ),
    Bad(
        "chat.requested with max_tokens past PostgreSQL's integer",
        "POST",
        "/",
        json={"message": "hi", "max_tokens": 2**31},
        headers=event(CHAT_REQUESTED),
        expected=DATA_NOT_FIT,
    ),
    *(
        Bad(
            f"tools.completed with turn {turn}",
            "POST",
            "/",
            json={"conversation_id": "c", "turn": turn, "results": []},
            headers=event(TOOLS_COMPLETED),
            expected=DATA_NOT_FIT,
        )
        for turn in (-1, 2**31, 2**63, 2**64)
    ),
    Bad(
        "tools.completed with a NUL in a result",
        "POST",
        "/",
        json={
            "conversation_id": "c",
            "turn": 1,
            "results": [{"id": "t", "name": "read_file", "is_error": False, "content": "a\x00"}],
        },
        headers=event(TOOLS_COMPLETED),
        expected=DATA_NOT_FIT,
    ),
]

TOOLS = [
    Bad("read_file with a number for path", "POST", "/v1/tools/read_file", json={"path": 5}),
    Bad("read_file without path", "POST", "/v1/tools/read_file", json={}),
    Bad("read_file with an unknown field", "POST", "/v1/tools/read_file", json={"path": "a", "mode": "rw"}),
    Bad("arguments not JSON", "POST", "/v1/tools/read_file", content=b"{path"),
    Bad("arguments a list", "POST", "/v1/tools/read_file", json=[1]),
    Bad("unknown tool", "POST", "/v1/tools/format_disk", json={}),
    Bad("GET a tool", "GET", "/v1/tools/read_file"),
    Bad("POST the catalog", "POST", "/v1/tools", json={}),
    Bad("catalog without the API key", "GET", "/v1/tools", keyed=False),
    Bad("tool without the API key", "POST", "/v1/tools/read_file", json={"path": "a"}, keyed=False),
    Bad("empty batch", "POST", "/v1/tools/batch", json={"calls": []}),
    Bad("batch not JSON", "POST", "/v1/tools/batch", content=b"[calls"),
    Bad("batch with an unknown field", "POST", "/v1/tools/batch", json={"calls": [{"name": "x"}], "x": 1}),
    Bad("batch call without name", "POST", "/v1/tools/batch", json={"calls": [{"arguments": {}}]}),
    Bad("GET the batch", "GET", "/v1/tools/batch"),
    Bad("select with k 0", "POST", "/v1/tools/select", json={"query": "x", "k": 0}),
    Bad("select without query", "POST", "/v1/tools/select", json={}),
    Bad(
        "select with an unknown strategy",
        "POST",
        "/v1/tools/select",
        json={"query": "x", "strategy": "magic"},
    ),
    Bad("select not JSON", "POST", "/v1/tools/select", content=b"query"),
    Bad("over-long batch", "POST", "/v1/tools/batch", content=b"x" * (LIMIT + 1)),
    Bad(
        "tools.requested without calls",
        "POST",
        "/",
        json={"conversation_id": "c"},
        headers=event(TOOLS_REQUESTED),
    ),
    Bad("arguments not UTF-8", "POST", "/v1/tools/read_file", content=not_utf8("path"), expected=NOT_JSON),
    Bad("arguments nested deep", "POST", "/v1/tools/read_file", content=deep("path"), expected=NOT_JSON),
    Bad(
        "read_file of a path with a NUL",
        "POST",
        "/v1/tools/read_file",
        json={"path": "a\x00b"},
        expected=(200, "is_error:invalid_path"),
    ),
    Bad("tool name with a NUL", "POST", "/v1/tools/read%00file", json={}, expected=(400, "invalid_path")),
    Bad("batch not UTF-8", "POST", "/v1/tools/batch", content=not_utf8("calls"), expected=NOT_JSON),
    Bad("batch nested deep", "POST", "/v1/tools/batch", content=deep("calls"), expected=NOT_JSON),
    Bad(
        "batch reading a path with a NUL",
        "POST",
        "/v1/tools/batch",
        json={"calls": [{"name": "read_file", "arguments": {"path": "a\x00b"}}]},
        expected=(200, "is_error:invalid_path"),
    ),
    Bad("select not UTF-8", "POST", "/v1/tools/select", content=not_utf8("query"), expected=NOT_JSON),
    Bad("select nested deep", "POST", "/v1/tools/select", content=deep("query"), expected=NOT_JSON),
    Bad(
        "tools.requested not UTF-8",
        "POST",
        "/",
        content=not_utf8("conversation_id"),
        headers=event(TOOLS_REQUESTED),
        expected=BAD_DATA,
    ),
    Bad(
        "tools.requested nested deep",
        "POST",
        "/",
        content=deep("calls"),
        headers=event(TOOLS_REQUESTED),
        expected=BAD_DATA,
    ),
    *(
        Bad(
            f"tools.requested with turn {turn}",
            "POST",
            "/",
            json={"conversation_id": "c", "turn": turn, "calls": []},
            headers=event(TOOLS_REQUESTED),
            expected=DATA_NOT_FIT,
        )
        for turn in (-1, 2**31, 2**63, 2**64)
    ),
    Bad(
        "tools.requested with a NUL in its conversation",
        "POST",
        "/",
        json={"conversation_id": "c\x00", "turn": 1, "calls": []},
        headers=event(TOOLS_REQUESTED),
        expected=DATA_NOT_FIT,
    ),
    Bad(
        "tools.requested with a NUL in a call id",
        "POST",
        "/",
        json={"conversation_id": "c", "turn": 1, "calls": [{"id": "\x00", "name": "read_file"}]},
        headers=event(TOOLS_REQUESTED),
        expected=DATA_NOT_FIT,
    ),
    Bad(
        "tools.requested reading a path with a NUL",
        "POST",
        "/",
        json={
            "conversation_id": "c",
            "turn": 1,
            "calls": [{"id": "t", "name": "read_file", "arguments": {"path": "\x00"}}],
        },
        headers=event(TOOLS_REQUESTED),
        expected=(200, "one CloudEvent ai.victor.tools.completed"),
    ),
]

EMBEDDINGS = [
    Bad("embeddings body not JSON", "POST", "/v1/embeddings", content=b"{input"),
    Bad("embeddings without input", "POST", "/v1/embeddings", json={}),
    Bad("embeddings of numbers", "POST", "/v1/embeddings", json={"input": [1, 2, 3]}),
    Bad("embeddings of nothing", "POST", "/v1/embeddings", json={"input": []}),
    Bad("embeddings of an empty string", "POST", "/v1/embeddings", json={"input": ""}),
    Bad("embeddings in int8", "POST", "/v1/embeddings", json={"input": "x", "encoding_format": "int8"}),
    Bad("embeddings of another model", "POST", "/v1/embeddings", json={"input": "x", "model": "other"}),
    Bad("embeddings without the API key", "POST", "/v1/embeddings", json={"input": "x"}, keyed=False),
    Bad("GET /v1/embeddings", "GET", "/v1/embeddings"),
    Bad("over-long embeddings body", "POST", "/v1/embeddings", content=b"x" * (LIMIT + 1)),
    Bad("index not JSON", "POST", "/v1/index", content=b"{"),
    Bad("index of no documents", "POST", "/v1/index", json={"documents": []}),
    Bad("index with documents of the wrong type", "POST", "/v1/index", json={"documents": "a"}),
    Bad("GET /v1/index", "GET", "/v1/index"),
    Bad("search not JSON", "POST", "/v1/search", content=b"q"),
    Bad("search without query", "POST", "/v1/search", json={}),
    Bad("search for nothing", "POST", "/v1/search", json={"query": ""}),
    Bad("search of an unknown collection", "POST", "/v1/search", json={"query": "x", "collection": "nope"}),
    Bad("search with a wrong k type", "POST", "/v1/search", json={"query": "x", "k": "ten"}),
    Bad("PUT /v1/search", "PUT", "/v1/search", json={}),
    Bad("index.requested of nothing", "POST", "/", json={"documents": []}, headers=event(INDEX_REQUESTED)),
    Bad("search.requested for nothing", "POST", "/", json={"query": ""}, headers=event(SEARCH_REQUESTED)),
    Bad(
        "embeddings.requested of nothing",
        "POST",
        "/",
        json={"input": []},
        headers=event(EMBEDDINGS_REQUESTED),
    ),
    *(
        case
        # /v1/embeddings answers in OpenAI's error envelope (type/code), the others in Victor's.
        for path, name, expected in (
            ("/v1/embeddings", "input", (400, "invalid_request_error/invalid_json")),
            ("/v1/index", "path", NOT_JSON),
            ("/v1/search", "query", NOT_JSON),
        )
        for case in (
            Bad(f"{path} not UTF-8", "POST", path, content=not_utf8(name), expected=expected),
            Bad(f"{path} nested deep", "POST", path, content=deep(name), expected=expected),
        )
    ),
    *(
        case
        for kind, name in (
            (EMBEDDINGS_REQUESTED, "input"),
            (INDEX_REQUESTED, "path"),
            (SEARCH_REQUESTED, "query"),
        )
        for case in (
            Bad(
                f"{kind} not UTF-8",
                "POST",
                "/",
                content=not_utf8(name),
                headers=event(kind),
                expected=BAD_DATA,
            ),
            Bad(
                f"{kind} nested deep", "POST", "/", content=deep(name), headers=event(kind), expected=BAD_DATA
            ),
        )
    ),
]

HEALTH_ROUTES = [
    Bad("status without the API key", "GET", "/v1/status", keyed=False),
    Bad("POST the status", "POST", "/v1/status", json={}),
    Bad("DELETE the status", "DELETE", "/v1/status"),
    Bad("status under another version", "GET", "/v2/status"),
    Bad("a ping, answered with one event", "POST", "/", content=b"", headers=event(PING, data=None)),
    Bad("a ping with data", "POST", "/", content=b'{"any": "thing"}', headers=event(PING)),
]


def cases(own_type: str, routes: list[Bad]) -> list[Bad]:
    return shared_corpus(own_type) + routes


@asynccontextmanager
async def both_modes(spec: FunctionSpec, settings: Settings) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """The function served by Litestar and by functions-framework's own app around the target."""
    async with AsyncExitStack() as stack:
        urls = {
            "litestar": await stack.enter_async_context(running(create_app(spec, settings))),
            "functions-framework": await stack.enter_async_context(running_target(spec, settings)),
        }
        clients = {}
        for mode, url in urls.items():
            clients[mode] = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60))
        yield clients


async def answer(client: httpx.AsyncClient, bad: Bad) -> tuple[Any, ...]:
    """What is compared: status, error code, and for `POST /` the reply rule."""
    headers = dict(bad.headers)
    if bad.keyed:
        headers["authorization"] = f"Bearer {KEY}"
    if any(name.startswith("ce-") for name in headers):
        headers["ce-id"] = str(uuid.uuid4())
    content = msgspec.json.encode(bad.json) if bad.json is not None else bad.content
    if bad.json is not None:
        headers.setdefault("content-type", "application/json")
    response = await client.request(bad.method, bad.path, content=content, headers=headers)
    code = None
    if response.headers.get("content-type", "").startswith("application/json") and response.content:
        body = response.json()
        code = body.get("error") if isinstance(body, dict) else None
        if isinstance(code, dict):  # OpenAI's envelope on the OpenAI-compatible routes
            code = f"{code['type']}/{code['code']}"
    if isinstance(body := _json(response), dict) and response.status_code == 200:
        outcomes = body.get("results", [body]) if bad.path.startswith("/v1/tools/") else []
        if outcomes and all(isinstance(o, dict) and o.get("is_error") for o in outcomes):
            return 200, "is_error:" + ",".join(str(o.get("error")) for o in outcomes)
    if bad.path == "/" and response.status_code < 300:
        if response.status_code == 202:
            assert response.content == b"", bad.name
            return response.status_code, "accepted, empty"
        assert response.status_code == 200, bad.name
        reply = from_http(dict(response.headers), response.content, max_bytes=1 << 20)
        return response.status_code, f"one CloudEvent {reply.type}"
    if response.status_code >= 400:
        assert code, f"{bad.name}: an error without a code: {response.text[:200]}"
    return response.status_code, code


def _json(response: httpx.Response) -> Any:
    if response.headers.get("content-type", "").startswith("application/json") and response.content:
        return response.json()
    return None


async def assert_same(clients: dict[str, httpx.AsyncClient], corpus: list[Bad]) -> dict[str, tuple[Any, ...]]:
    """Both modes' answers are equal, none is a 500, and each case that pins its answer gets it;
    returns them by case name."""
    assert len(corpus) >= 20
    seen = {
        mode: [(bad.name, *await answer(client, bad)) for bad in corpus] for mode, client in clients.items()
    }
    assert seen["litestar"] == seen["functions-framework"]
    answers = {name: tuple(rest) for name, *rest in seen["litestar"]}
    assert [name for name, (status, *_) in answers.items() if status == 500] == []
    pinned = {bad.name: bad.expected for bad in corpus if bad.expected is not None}
    assert {name: answers[name] for name in pinned} == pinned
    # HTTP binding 3.1.3.2: quoted header values are unquoted, so the type is the function's own.
    quoted = answers["event with double-quoted attributes and data of the wrong shape"]
    assert quoted == answers["event with data of the wrong shape"]
    return answers


@pytest.fixture
def parity_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def build(**env: str) -> Settings:
        return make_settings(VICTOR_API_KEY=KEY, VICTOR_MAX_EVENT_BYTES=f"{LIMIT}B", **env)

    return build


async def test_health_answers_alike_in_both_modes(parity_settings: Callable[..., Settings]) -> None:
    async with both_modes(HEALTH, parity_settings()) as clients:
        seen = await assert_same(clients, cases(PING, HEALTH_ROUTES))
    assert seen["a ping, answered with one event"] == (200, "one CloudEvent ai.victor.health.reported")
    for bad in bad_attribute_events(PING):
        assert seen[bad.name] == (400, "invalid_event"), bad.name


async def test_tools_answers_alike_in_both_modes(parity_settings: Callable[..., Settings]) -> None:
    async with both_modes(tools_function(ToolsSettings()), parity_settings()) as clients:
        seen = await assert_same(clients, cases(TOOLS_REQUESTED, TOOLS))
    assert seen["read_file with a number for path"] == (422, "invalid_request")
    assert seen["arguments not JSON"] == (400, "invalid_json")
    assert seen["batch not JSON"] == (400, "invalid_json")


async def test_chat_answers_alike_in_both_modes(parity_settings: Callable[..., Settings]) -> None:
    async with both_modes(chat_function(chat_settings(provider=None)), parity_settings()) as clients:
        seen = await assert_same(clients, cases(CHAT_REQUESTED, CHAT))
    assert seen["chat without a provider"] == (503, "unavailable")
    assert seen["chat message of the wrong type"] == (422, "invalid_request")


async def test_embeddings_answers_alike_in_both_modes(
    parity_settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue("minilm")  # loaded once per session
    settings = parity_settings(VICTOR_EMBEDDING_MODEL=model.name)
    async with both_modes(embeddings_function(load_embedding_settings({})), settings) as clients:
        for client in clients.values():
            await wait_started(client)
        await assert_same(clients, cases(SEARCH_REQUESTED, EMBEDDINGS))


@pytest.mark.parametrize(
    "spec",
    [
        HEALTH,
        tools_function(ToolsSettings()),
        chat_function(chat_settings(provider=None)),
        embeddings_function(load_embedding_settings({})),
    ],
    ids=lambda spec: spec.name,
)
def test_the_openapi_schema_describes_every_route_of_the_table(
    spec: FunctionSpec, parity_settings: Callable[..., Settings]
) -> None:
    schema = create_app(spec, parity_settings()).openapi_schema.to_schema()
    # Every request body is described, so a client (or a fuzzer) knows what to send: POST / too.
    event = schema["paths"]["/"]["post"]["requestBody"]["content"]
    assert set(event) == {"application/cloudevents+json", "application/json"}
    assert {"specversion", "id", "source", "type", "data"} <= set(
        event["application/cloudevents+json"]["schema"]["properties"]
    )
    for route in spec.routes:
        operation = schema["paths"][route.path][route.method.lower()]
        if route.body is not None:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert operation["requestBody"]["required"] is True, route.path
            if isinstance(route.body, type) and issubclass(route.body, msgspec.Struct):
                assert set(body["properties"]) == set(route.body.__struct_fields__), route.path
            else:  # a tool's arguments: any object, checked by the tool named in the path
                assert body == {"type": "object"}, route.path
            assert "$ref" not in str(body)
        if route.returns is not None:
            answer = operation["responses"]["200"]["content"][route.media_type]["schema"]
            assert set(answer["properties"]) == set(route.returns.__struct_fields__), route.path


@pytest.mark.parametrize("name", ["chat", "tools", "embeddings", "health"])
def test_the_functions_framework_entry_imports_nothing_from_litestar(name: str, tmp_path: Path) -> None:
    load = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('main', 'functions/{name}/main.py');"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec));"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'litestar'}))"
    )
    env = clean_env(WORKSPACE_DIR=str(tmp_path), VICTOR_EMBEDDING_MODEL=minilm_directory())
    result = subprocess.run(
        [sys.executable, "-c", load], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr


EVENT_TOKEN = "parity-event-token-9876543210"


async def refused_alike(clients: dict[str, httpx.AsyncClient], **request: Any) -> tuple[Any, ...]:
    """Both modes' status, error code and challenge headers for one request; they must be equal."""
    seen = {}
    for mode, client in clients.items():
        response = await client.request(**request)
        body = (
            response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        )
        seen[mode] = (
            response.status_code,
            body.get("error") if isinstance(body, dict) else None,
            response.headers.get("www-authenticate"),
            response.headers.get("retry-after"),
        )
    assert seen["litestar"] == seen["functions-framework"], request
    return seen["litestar"]


def ping(**headers: str) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": "/",
        "headers": {**event(PING, data=None), "ce-id": str(uuid.uuid4()), **headers},
    }


async def test_event_tokens_are_checked_alike_in_both_modes(parity_settings: Callable[..., Settings]) -> None:
    settings = parity_settings(VICTOR_EVENT_AUTH="token", VICTOR_EVENT_TOKEN=EVENT_TOKEN)
    async with both_modes(HEALTH, settings) as clients:
        missing = await refused_alike(clients, **ping())
        wrong = await refused_alike(clients, **ping(authorization="Bearer not-the-token"))
        api_key = await refused_alike(clients, **ping(authorization=f"Bearer {KEY}"))
        accepted = await refused_alike(clients, **ping(authorization=f"Bearer {EVENT_TOKEN}"))
        route = await refused_alike(clients, method="GET", url="/v1/status")
    assert missing == wrong == api_key == (401, "unauthorized", "Bearer", None)
    assert accepted == (200, None, None, None)
    # The event token is no API key either.
    assert route == (401, "unauthorized", "Bearer", None)


async def test_oidc_tokens_are_checked_alike_in_both_modes(parity_settings: Callable[..., Settings]) -> None:
    async with oidc_issuer() as issuer:
        settings = parity_settings(VICTOR_EVENT_AUTH="oidc", VICTOR_OIDC_ISSUER=issuer.url)
        async with both_modes(HEALTH, settings) as clients:

            async def sent(token: str) -> tuple[Any, ...]:
                return await refused_alike(clients, **ping(authorization=f"Bearer {token}"))

            accepted = await sent(issuer.token("victor-health"))
            missing = await refused_alike(clients, **ping())
            expired = await sent(issuer.token("victor-health", expires_in=-120))
            other_audience = await sent(issuer.token("victor-tools"))
            other_issuer = await sent(issuer.token("victor-health", issuer="https://elsewhere.example"))
            other_key = await sent(issuer.token("victor-health", key=rsa_key()))
            not_a_jwt = await sent("not.a.jwt")
    assert accepted == (200, None, None, None)
    for refused in (missing, expired, other_audience, other_issuer, other_key, not_a_jwt):
        assert refused == (401, "unauthorized", "Bearer", None)
    # The discovery document and the keys were read once, then cached for every request.
    assert issuer.requests == {"/.well-known/openid-configuration": 1, "/keys": 1}


async def test_rate_limits_answer_alike_in_both_modes(parity_settings: Callable[..., Settings]) -> None:
    key = f"parity-rate-{uuid.uuid4().hex}"
    settings = parity_settings(VICTOR_API_KEYS=f"{key},{KEY}", VICTOR_RATE_LIMIT="2/minute")
    async with both_modes(HEALTH, settings) as clients:
        status = {"method": "GET", "url": "/v1/status", "headers": {"x-api-key": key}}
        # Both modes share the key's window in Redis: two requests each use up the limit of 2.
        first = await refused_alike(clients, **status)
        limited = await refused_alike(clients, **status)
    assert first[:2] == (200, None)
    assert limited[:3] == (429, "rate_limited", None)
    assert 1 <= int(limited[3]) <= 60
