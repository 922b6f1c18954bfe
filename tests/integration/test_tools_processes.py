"""The tools function as processes (functions-framework, `victor serve`) and the `victor tools` client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from common.cloudevents import from_http, new_event, to_binary
from eventing.schemas.tools import TOOLS_REQUESTED, ToolCall, ToolsRequested
from tests.support.foundation import ROOT, clean_env, functions_framework, serving, victor_serve
from tests.support.tools import make_repository


def victor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventing.cli", "tools", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_functions_framework_serves_the_same_api(services, tmp_path: Path) -> None:
    workspace = make_repository(tmp_path / "workspace")
    env = clean_env(**services.env(WORKSPACE_DIR=str(workspace)))
    async with (
        serving(functions_framework("functions/tools/main.py"), env, tmp_path / "ff.log") as served,
        httpx.AsyncClient(base_url=served.url, timeout=30) as client,
    ):
        catalog = (await client.get("/v1/tools")).json()
        read = (await client.post("/v1/tools/read_file", json={"path": "docs/guide.txt", "limit": 1})).json()
        unknown = await client.post("/v1/tools/format_disk", json={})
        outside = await client.post("/v1/tools/a/b", json={})
        invalid = await client.post("/v1/tools/read_file", json={"path": 1})
        batch = (
            await client.post("/v1/tools/batch", json={"calls": [{"name": "git_log", "arguments": {}}]})
        ).json()
        request = ToolsRequested(
            conversation_id="ff",
            turn=1,
            calls=[ToolCall(id="t1", name="glob", arguments={"pattern": "*.md"})],
        )
        headers, body = to_binary(new_event(TOOLS_REQUESTED, "/tests", request))
        reply = await client.post("/", headers=headers, content=body)
    assert len(catalog["tools"]) == 11
    assert read["content"] == "1\tline one\n[2 more lines; read on with offset=2]"
    assert (unknown.status_code, unknown.json()["detail"]) == (
        404,
        "no tool named 'format_disk'; GET /v1/tools lists them",
    )
    assert outside.status_code == 404
    assert invalid.status_code == 422 and "$.path" in invalid.json()["detail"]
    assert batch["results"][0]["content"].endswith("Ada Add the readme and guide\n")
    event = from_http(reply.headers, reply.content, max_bytes=1 << 20)
    assert event.type == "ai.victor.tools.completed"
    assert event.json()["results"][0]["content"] == "README.md"


async def test_victor_tools_commands_talk_to_victor_serve(services, tmp_path: Path) -> None:
    workspace = make_repository(tmp_path / "workspace")
    env = clean_env(**services.env(WORKSPACE_DIR=str(workspace), VICTOR_EMBEDDING_MODEL="/none"))
    async with serving(victor_serve("tools"), env, tmp_path / "serve.log") as served:
        client_env = clean_env(VICTOR_TOOLS_URL=served.url)
        listed, ran, failed, selected, bad = await asyncio.gather(
            asyncio.to_thread(victor, client_env, "list"),
            asyncio.to_thread(
                victor, client_env, "run", "read_file", "--args", '{"path": "docs/guide.txt", "offset": 3}'
            ),
            asyncio.to_thread(victor, client_env, "run", "read_file", "--args", '{"path": "../x"}'),
            asyncio.to_thread(
                victor, client_env, "select", "show the commit history", "-k", "2", "--strategy", "keyword"
            ),
            asyncio.to_thread(victor, client_env, "run", "nope"),
        )
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].startswith("read_file ")
    assert (ran.returncode, ran.stdout) == (0, "3\tline three\n")
    assert failed.returncode == 1
    assert (
        failed.stderr
        == "read_file failed (outside_workspace): '../x' uses '..'; paths must stay in the workspace\n"
    )
    assert selected.returncode == 0 and selected.stdout.splitlines()[0].endswith("git_log")
    assert selected.stdout.splitlines()[-1] == "strategy keyword"
    assert (bad.returncode, bad.stderr) == (
        1,
        "victor: HTTP 404: no tool named 'nope'; GET /v1/tools lists them\n",
    )
