"""Fuzzing every function's OpenAPI schema with schemathesis: no input gets a 500 or a body that is not JSON.

Each function is served in both modes (Litestar and functions-framework) with real
PostgreSQL, Redis and LanceDB; schemathesis reads the schema Litestar generates (which
describes every request body, `POST /` and a tool's arguments included) and draws
requests that fit it (positive) and requests that break it (negative: wrong types,
missing members, out-of-range numbers, NUL characters where the schema forbids them).
Every request goes to both modes. A bounded, derandomized number of examples per
operation keeps the run short and the same every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from common.app import create_app
from common.function import FunctionSpec
from common.settings import Settings
from functions.chat.function import build_function as chat_function
from functions.embeddings.function import build_function as embeddings_function
from functions.embeddings.settings import load_embedding_settings
from functions.health.function import FUNCTION as HEALTH
from functions.tools.function import build_function as tools_function
from functions.tools.settings import ToolsSettings
from tests.integration.test_serving_parity import KEY, both_modes
from tests.support.chat import chat_settings
from tests.support.embeddings import minilm, wait_started  # noqa: F401 - fixtures

EXAMPLES = 8  # per operation and generation mode


@dataclass
class Fuzzed:
    """What one run sent and what went wrong: (mode, method, path, status, body start) per failure."""

    requests: int = 0
    failures: list[tuple[str, str, str, int, str]] = field(default_factory=list)
    # functions-framework's own router (Starlette's `{path:path}`) does not match a path holding a line
    # break and answers its plain-text 404 before our target is called: counted, not ours to fix.
    framework_404s: int = 0


def check(fuzzed: Fuzzed, mode: str, case: Any, response: httpx.Response) -> None:
    """A failure: a 500, or an error whose body is not the JSON error body (an object with `error`)."""
    fuzzed.requests += 1
    path = unquote(case.formatted_path)
    if mode == "functions-framework" and response.status_code == 404 and ("\n" in path or "\r" in path):
        fuzzed.framework_404s += 1
        return
    failed = response.status_code == 500
    if response.status_code >= 400 and not failed:
        try:
            failed = "error" not in response.json()
        except ValueError:
            failed = True
    if failed:
        fuzzed.failures.append(
            (mode, case.method, case.formatted_path, response.status_code, response.text[:300])
        )


def fuzz(raw_schema: dict[str, Any], urls: dict[str, str]) -> Fuzzed:
    """Blocking: each operation of the schema, EXAMPLES positive and negative cases each, sent to each URL."""
    schema = schemathesis.openapi.from_dict(raw_schema)
    fuzzed = Fuzzed()
    clients = {mode: httpx.Client(base_url=url, timeout=60) for mode, url in urls.items()}
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            for generation in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(
                    max_examples=EXAMPLES,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=generation))
                def send(case: Any) -> None:
                    request = case.as_transport_kwargs()
                    headers = {**(request.get("headers") or {}), "authorization": f"Bearer {KEY}"}
                    for mode, client in clients.items():
                        response = client.request(
                            case.method,
                            case.formatted_path,
                            headers=headers,
                            params=request.get("params"),
                            content=request.get("data"),
                            json=request.get("json"),
                        )
                        check(fuzzed, mode, case, response)

                try:
                    send()
                except Unsatisfiable:  # nothing to break: an operation without parameters or body
                    assert generation is GenerationMode.NEGATIVE, operation.label
    finally:
        for client in clients.values():
            client.close()
    return fuzzed


async def fuzzed_function(spec: FunctionSpec, settings_: Settings, *, wait: bool = False) -> Fuzzed:
    async with both_modes(spec, settings_) as clients:
        if wait:
            for client in clients.values():
                await wait_started(client)
        raw = create_app(spec, settings_).openapi_schema.to_schema()
        fuzzed = await asyncio.to_thread(fuzz, raw, {mode: str(c.base_url) for mode, c in clients.items()})
    print(
        f"FUZZ {spec.name}: {fuzzed.requests} requests, {len(fuzzed.failures)} failures,"
        f" {fuzzed.framework_404s} functions-framework 404s for a line break in the path"
    )
    return fuzzed


@pytest.fixture
def fuzz_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def build(**env: str) -> Settings:
        return make_settings(VICTOR_API_KEY=KEY, **env)

    return build


@pytest.mark.parametrize(
    "spec",
    [HEALTH, tools_function(ToolsSettings()), chat_function(chat_settings(provider=None))],
    ids=lambda spec: spec.name,
)
async def test_no_fuzzed_request_gets_a_500_or_an_error_that_is_not_json(
    spec: FunctionSpec, fuzz_settings: Callable[..., Settings]
) -> None:
    fuzzed = await fuzzed_function(spec, fuzz_settings())
    assert fuzzed.requests >= 30
    assert fuzzed.failures == []


async def test_no_fuzzed_embeddings_request_gets_a_500_or_an_error_that_is_not_json(
    fuzz_settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue("minilm")  # loaded once per session
    settings_ = fuzz_settings(VICTOR_EMBEDDING_MODEL=model.name)
    fuzzed = await fuzzed_function(embeddings_function(load_embedding_settings({})), settings_, wait=True)
    assert fuzzed.requests >= 30
    assert fuzzed.failures == []
