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

from common.settings import Settings
from functions.tools.app import create
from functions.tools.settings import ToolsSettings
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
    """A small real git repository with two commits in `workspace`."""
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
        yield ToolsServer(url, client, settings.workspace_dir, settings)
