"""Client commands find a running `victor dev` by its state file; --url overrides; timeouts say what next.

The tools function is served for real; `.victor/dev.json` is written as
`victor dev` writes it (tests/e2e/test_victor_dev.py checks `victor dev` does).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventing.cli.main import build_parser
from eventing.dev.state import find_state, write_state
from functions.tools.settings import ToolsSettings
from tests.support.tools import tools_server

DEAD = "http://127.0.0.1:9"


def run_cli(argv: list[str], settings) -> int:  # type: ignore[no-untyped-def]
    args = build_parser().parse_args(argv)
    return int(args.run(args, settings))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with a `.victor/` directory; commands run from a subdirectory of it."""
    (tmp_path / ".victor").mkdir()
    (tmp_path / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "src" / "deep")
    return tmp_path


async def test_client_commands_use_the_urls_victor_dev_recorded(
    make_settings, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with tools_server(make_settings) as server:
        write_state(project / ".victor", {"tools": server.url, "chat": DEAD})
        no_urls = make_settings()
        assert "tools" not in no_urls.function_urls
        listed = await asyncio.to_thread(run_cli, ["tools", "list", "--json"], no_urls)
        catalog = json.loads(capsys.readouterr().out)
        selected = await asyncio.to_thread(
            run_cli,
            ["tools", "select", "show the commit history", "--strategy", "keyword", "--json"],
            no_urls,
        )
        selection = json.loads(capsys.readouterr().out)
        ran = await asyncio.to_thread(
            run_cli, ["tools", "run", "read_file", "--args", '{"path": "README.md"}', "--json"], no_urls
        )
        outcome = json.loads(capsys.readouterr().out)
        # --url wins over the state file, and the state file over nothing.
        write_state(project / ".victor", {"tools": DEAD})
        overridden = await asyncio.to_thread(run_cli, ["tools", "list", "--url", server.url], no_urls)
        assert "catalog version" in capsys.readouterr().out
        unreachable = await asyncio.to_thread(run_cli, ["tools", "list"], no_urls)
    assert (listed, selected, ran, overridden, unreachable) == (0, 0, 0, 0, 1)
    assert len(catalog["tools"]) == 11
    assert selection["tools"][0]["name"] == "git_log"
    assert (outcome["is_error"], outcome["content"]) == (
        False,
        "1\t# Demo\n2\t\n3\tA tiny project for the tools tests.",
    )
    assert capsys.readouterr().err == (
        f"victor: cannot reach the tools function at {DEAD} (ConnectError);"
        " start it with `victor dev`, or pass --url\n"
    )


def test_a_state_file_left_by_a_stopped_victor_dev_is_ignored(project: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (project / ".victor" / "dev.json").write_text(
        json.dumps({"pid": int(finished.stdout), "urls": {"tools": DEAD}, "started_at": 0})
    )
    assert find_state() is None
    write_state(project / ".victor", {"tools": DEAD})
    found = find_state()
    assert found is not None and (found.pid, found.urls) == (os.getpid(), {"tools": DEAD})


async def test_a_timeout_says_what_to_do_next(make_settings, capsys: pytest.CaptureFixture[str]) -> None:
    slow = ToolsSettings(tool_timeout=0.5)
    async with tools_server(make_settings, slow) as server:
        (server.workspace / "trap.txt").write_text("a" * 40 + "b\n")
        grep = [
            "tools",
            "run",
            "grep",
            "--args",
            '{"pattern": "(a|a)*$", "path": "trap.txt"}',
            "--url",
            server.url,
        ]
        tool_timeout = await asyncio.to_thread(run_cli, grep, server.settings)
        tool_err = capsys.readouterr().err
        client_timeout = await asyncio.to_thread(run_cli, [*grep, "--timeout", "0.1"], server.settings)
        client_err = capsys.readouterr().err
    assert tool_timeout == client_timeout == 1
    assert tool_err.endswith("victor: run it again, or raise VICTOR_TOOL_TIMEOUT on the tools function\n")
    assert client_err == (
        f"victor: the tools function at {server.url} gave no answer within 0.1 s;"
        " it may still be working: try again, or raise --timeout\n"
    )
