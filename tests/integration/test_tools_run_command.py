"""run_command, when enabled: git hardened like the git tools, and a child that cannot read its parent.

The tools function runs in this test process, so "the parent" a command would read is this
process, which holds `SECRET` in its memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from functions.tools.settings import ToolsSettings
from tests.support.tools import READ_PARENT_ENVIRON, READ_PARENT_MEMORY, git, git_escapes, tools_server

ENABLED = ToolsSettings(enable_run_command=True, run_command_allowlist=("git", "python3"))
SECRET = "CANARY-7f3a-parent-secret"


async def test_every_git_escape_is_refused_with_its_code(make_settings, tmp_path: Path) -> None:
    canary = tmp_path / "outside" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text(SECRET)
    async with tools_server(make_settings, ENABLED) as server:
        for argv, code in git_escapes(str(canary)):
            outcome = await server.call("run_command", {"argv": ["git", *argv]})
            assert (outcome["is_error"], outcome["error"]) == (True, code), (argv, outcome["content"])
            assert SECRET not in outcome["content"]
        assert sorted(os.listdir(canary.parent)) == ["canary.txt"]
        assert not (server.workspace / "stolen.txt").exists()


async def test_git_runs_with_the_hardened_environment_of_the_git_tools(make_settings) -> None:
    async with tools_server(make_settings, ENABLED) as server:
        workspace = server.workspace
        # A repository that names a diff driver, a filter and a merge driver, each a program.
        marker = workspace / "ran"
        with (workspace / ".git" / "config").open("a") as config:
            config.write(
                f'[diff "x"]\n\tcommand = touch {marker}\n\ttextconv = touch {marker}\n'
                f'[filter "x"]\n\tclean = touch {marker}\n\tsmudge = touch {marker}\n'
                f'[merge "x"]\n\tdriver = touch {marker}\n'
            )
        (workspace / ".gitattributes").write_text("* diff=x filter=x merge=x\n")
        (workspace / "README.md").write_text("# Changed\n")
        log = await server.call("run_command", {"argv": ["git", "log", "--format=%s"]})
        assert log["content"] == "Add the app\nAdd the readme and guide\n"
        status = await server.call("run_command", {"argv": ["git", "status", "--short"]})
        assert status["content"] == " M README.md\n?? .gitattributes\n"
        # The diff driver is emptied: git refuses to run "" instead of running the configured program.
        diff = await server.call("run_command", {"argv": ["git", "diff"]})
        assert diff["is_error"] is True
        await server.call("run_command", {"argv": ["git", "add", "README.md"]})
        committed = await server.call(
            "run_command",
            {"argv": ["git", "-c", "user.name=x", "commit", "-m", "change"]},
        )
        assert committed["error"] == "git_option"
        assert not marker.exists()
        assert git(workspace, "diff", "--cached", "--name-only") == "README.md\n"


async def test_a_git_alias_in_the_repository_is_never_run(make_settings) -> None:
    async with tools_server(make_settings, ENABLED) as server:
        marker = server.workspace / "ran"
        with (server.workspace / ".git" / "config").open("a") as config:
            config.write(f"[alias]\n\tst = !touch {marker}\n\tlg = log\n")
        for alias in ("st", "lg"):
            outcome = await server.call("run_command", {"argv": ["git", alias]})
            assert (outcome["is_error"], outcome["error"]) == (True, "git_command")
        assert not marker.exists()


@pytest.mark.parametrize("script", [READ_PARENT_ENVIRON, READ_PARENT_MEMORY], ids=["environ", "mem"])
async def test_a_child_cannot_read_the_parents_environment_or_memory(
    make_settings, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)  # in this process's memory while the child looks
    async with tools_server(make_settings, ENABLED) as server:
        outcome = await server.call("run_command", {"argv": ["python3", "-c", script]})
        own = await server.call(
            "run_command",
            {"argv": ["python3", "-c", "print(open('/proc/self/environ').read().replace(chr(0), ' '))"]},
        )
    assert (outcome["is_error"], outcome["error"]) == (True, "exit_status"), outcome["content"]
    assert "PermissionError" in outcome["content"]
    assert SECRET not in outcome["content"]
    # Its own environment is the scrubbed one: HOME is the workspace, and nothing of ours is in it.
    assert f"HOME={server.workspace} " in own["content"]
    assert "ANTHROPIC_API_KEY" not in own["content"]
    assert SECRET not in own["content"]
