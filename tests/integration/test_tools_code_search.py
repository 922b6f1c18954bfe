"""code_search through the real embeddings function: both functions under real HTTP, one workspace."""

# ruff: noqa: F811 - pytest fixtures imported from tests.support.embeddings

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from common.settings import Settings
from eventing.dev.embedded import free_port
from functions.tools.settings import ToolsSettings
from tests.support.embeddings import (  # noqa: F401 - fixtures
    copy_code_repo,
    embedding_settings,
    embeddings_app,
    minilm,
    wait_started,
)
from tests.support.servers import running
from tests.support.tools import ToolsServer, tools_server

pytestmark = pytest.mark.slow

HEADER = re.compile(
    r"^(?P<path>[^\s:]+):(?P<start>\d+)-(?P<end>\d+) \(score (?P<score>-?\d+\.\d{3})\)$", re.MULTILINE
)


def snippets(outcome: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    """(path, start line, end line, snippet) of each hit in a code_search result, in rank order."""
    assert outcome["is_error"] is False, outcome
    content: str = outcome["content"]
    headers = list(HEADER.finditer(content))
    ends = [h.start() for h in headers[1:]] + [len(content)]
    return [
        (h["path"], int(h["start"]), int(h["end"]), content[h.end() + 1 : end].rstrip("\n"))
        for h, end in zip(headers, ends, strict=True)
    ]


def hits(outcome: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(path, start, end) for path, start, end, _ in snippets(outcome)]


@contextlib.asynccontextmanager
async def both_functions(
    embeddings_app: Callable[..., Any],
    make_settings: Callable[..., Settings],
    tools_settings: ToolsSettings | None = None,
) -> AsyncIterator[tuple[ToolsServer, httpx.AsyncClient]]:
    """The embeddings function and the tools function, pointed at it, sharing the test's workspace."""
    app, settings = embeddings_app()
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as embeddings:
        await wait_started(embeddings)
        async with tools_server(
            make_settings,
            tools_settings or ToolsSettings(tool_timeout=120),
            VICTOR_EMBEDDINGS_URL=url,
            VICTOR_EMBEDDING_MODEL=settings.embedding_model,
        ) as tools:
            assert tools.workspace == settings.workspace_dir
            yield tools, embeddings


async def test_plain_word_queries_find_the_right_file_first(
    embeddings_app: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    copy_code_repo(make_settings().workspace_dir)
    expectations = {
        "where are passwords hashed": "shopfront/auth/passwords.py",
        "parse the config file": "shopfront/config/loader.py",
        "retry failed HTTP requests with backoff": "shopfront/net/retry.py",
        "send a welcome email to new users": "shopfront/notifications/email.py",
        "refund a card payment": "shopfront/payments/stripe_client.py",
    }
    async with both_functions(embeddings_app, make_settings) as (tools, embeddings):
        first = {q: await tools.call("code_search", {"query": q, "k": 3}) for q in expectations}
        in_payments = await tools.call(
            "code_search", {"query": "hash password", "path": "shopfront/payments", "k": 5}
        )
        markdown = await tools.call("code_search", {"query": "how to deploy", "glob": "*.md", "k": 2})
        outside = await tools.call("code_search", {"query": "x", "path": "../"})
        # The tools function indexed the workspace into its collection of the embeddings function.
        listed = await embeddings.post(
            "/v1/search", json={"query": "where are passwords hashed", "collection": "workspace", "k": 1}
        )
    for query, path in expectations.items():
        assert hits(first[query])[0][0] == path, (query, first[query]["content"][:300])
    assert first["where are passwords hashed"]["content"].startswith(
        "shopfront/auth/passwords.py:1-16 (score "
    )
    top_path, _, _, top_snippet = snippets(first["where are passwords hashed"])[0]
    # The file is 273 tokens, past MiniLM's window: its first chunk ends before verify_password.
    lines = (make_settings().workspace_dir / top_path).read_text().splitlines()
    assert top_snippet == "\n".join(lines[:16]).rstrip("\n")
    assert {path for path, _, _ in hits(in_payments)} == {
        "shopfront/payments/stripe_client.py",
        "shopfront/payments/invoices.py",
    }
    assert hits(markdown)[0][0] == "docs/deployment.md"
    assert all(path.endswith(".md") for path, _, _ in hits(markdown))
    assert (outside["is_error"], outside["error"]) == (True, "outside_workspace")
    assert listed.json()["results"][0]["path"] == "shopfront/auth/passwords.py"


async def test_a_search_after_an_edit_sees_the_edit(
    embeddings_app: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    async with both_functions(embeddings_app, make_settings) as (tools, _embeddings):
        text = "def migrate_zebras(herd):\n    return [zebra.move_north() for zebra in herd]\n"
        assert (await tools.call("write_file", {"path": "src/wildlife.py", "content": text}))[
            "is_error"
        ] is False
        before = await tools.call("code_search", {"query": "zebra herd migration", "k": 1})
        edited = await tools.call(
            "edit_file",
            {
                "path": "src/wildlife.py",
                "old_text": text,
                "new_text": "def water_plants(office):\n    office.ficus.water(litres=1)\n",
            },
        )
        after = await tools.call("code_search", {"query": "water the office plants", "k": 10})
        # A change made outside the tools (no workspace generation bump) is seen too.
        (tools.workspace / "src" / "tides.py").write_text("def high_tide(moon):\n    return moon.pull * 2\n")
        outside_edit = await tools.call("code_search", {"query": "ocean tide from the moon", "k": 1})
    assert hits(before) == [("src/wildlife.py", 1, 2)]
    assert "migrate_zebras" in before["content"]
    assert edited["is_error"] is False
    assert hits(after)[0] == ("src/wildlife.py", 1, 2)
    assert "water_plants" in after["content"]
    assert "zebra" not in after["content"]
    assert hits(outside_edit) == [("src/tides.py", 1, 2)]


async def test_embeddings_function_down_or_refusing_gives_a_clear_error_result(
    embeddings_app: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    down_url = f"http://127.0.0.1:{free_port()}"
    async with tools_server(make_settings, VICTOR_EMBEDDINGS_URL=down_url) as tools:
        down = await tools.call("code_search", {"query": "parse a date string"})
        listed = await tools.client.get("/v1/tools")
    assert down == {
        **down,
        "is_error": True,
        "error": "unavailable",
        "content": "code_search: the embeddings function is unreachable (ConnectError)",
    }
    assert listed.status_code == 200  # the function itself keeps serving
    refusing = ToolsSettings(tool_timeout=120, code_search_collection="no spaces allowed")
    async with both_functions(embeddings_app, make_settings, refusing) as (tools, _embeddings):
        refused = await tools.call("code_search", {"query": "parse a date string"})
    assert (refused["is_error"], refused["error"]) == (True, "search_failed")
    assert refused["content"].startswith(
        "code_search: the embeddings function answered 422 to /v1/index: "
        "collection 'no spaces allowed' is not a valid name"
    )
