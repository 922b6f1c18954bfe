"""Git cannot run a program or read outside the workspace, whatever the workspace or the model holds.

The reported attack: write a `[filter "x"] clean = <command>` section into
`.git/config` and `* filter=x` into `.gitattributes`, then call `git_diff`.
Each test plants a marker command that would create a file outside the
workspace; the marker must never appear. Attacks the model could make itself
go through every channel (HTTP, a batch, a CloudEvent through the broker, MCP);
attacks on a repository already in the workspace (a cloned or unpacked one)
go straight to the git tools.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from mcp import Client

from common.cloudevents import new_event
from common.settings import Settings
from eventing.schemas.tools import TOOLS_COMPLETED, TOOLS_REQUESTED, ToolCall, ToolsCompleted, ToolsRequested
from tests.support.broker import broker_manifest, mesh, publish, trigger_manifest
from tests.support.recorder import EventRecorder
from tests.support.servers import running
from tests.support.tools import ToolsServer, git, tools_server

ORIGINAL_README = "# Demo\n\nA tiny project for the tools tests.\n"


def marker_command(marker: Path) -> str:
    """A git config value: a command that leaves `marker` behind if git ever runs it (input passed on).

    Double-quoted, since an unquoted `;` starts a comment in git's config syntax.
    """
    return f"\"sh -c 'touch {marker}; cat'\""


def filter_config(marker: Path, driver: str = "x") -> str:
    command = marker_command(marker)
    return f'\n[filter "{driver}"]\n\tclean = {command}\n\tsmudge = {command}\n\tprocess = {command}\n'


async def test_the_reported_filter_attack_is_refused_over_http_batch_events_and_mcp(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    attack = [
        ("write_file", {"path": ".git/config", "content": filter_config(marker)}),
        ("edit_file", {"path": ".git/config", "old_text": "[core]", "new_text": filter_config(marker)}),
        ("write_file", {"path": ".git/hooks/pre-commit", "content": f"#!/bin/sh\ntouch {marker}\n"}),
        ("write_file", {"path": ".git/objects/info/alternates", "content": str(tmp_path / "other")}),
        ("write_file", {"path": ".git/info/attributes", "content": "* filter=x\n"}),
        ("write_file", {"path": "./.git/config", "content": "x"}),
        ("write_file", {"path": "src//.git/config", "content": "x"}),
        ("write_file", {"path": ".GIT/config", "content": "x"}),
        ("write_file", {"path": ".Git", "content": "gitdir: /tmp\n"}),
        ("write_file", {"path": "vendor/lib/.git", "content": "gitdir: /tmp\n"}),
        ("write_file", {"path": "vendor/lib/.git/config", "content": filter_config(marker)}),
        ("write_file", {"path": "meta/config", "content": filter_config(marker)}),  # meta -> .git
        ("write_file", {"path": "config_link", "content": filter_config(marker)}),  # -> .git/config
    ]
    async with tools_server(make_settings) as server:
        ws = server.workspace
        (ws / "meta").symlink_to(".git")
        (ws / "config_link").symlink_to(".git/config")
        config_before = (ws / ".git" / "config").read_bytes()
        (ws / ".gitattributes").write_text("* filter=x\n")
        (ws / "README.md").write_text("# Demo\n\nChanged.\n")

        for name, arguments in attack:  # HTTP, one call at a time
            outcome = await server.call(name, arguments)
            assert (outcome["is_error"], outcome["error"]) == (True, "git_metadata"), (name, arguments)
        batch = await server.client.post(
            "/v1/tools/batch", json={"calls": [{"name": n, "arguments": a} for n, a in attack]}
        )
        assert batch.status_code == 200, batch.text
        assert [r["error"] for r in batch.json()["results"]] == ["git_metadata"] * len(attack)
        async with Client(f"{server.url}/mcp") as mcp_client:
            for name, arguments in attack:
                result = await mcp_client.call_tool(name, arguments)
                assert result.is_error, (name, arguments)
        completed = await through_the_broker(make_settings, tmp_path, server, attack)
        assert [(r.is_error, r.error) for r in completed.results] == [(True, "git_metadata")] * len(attack)

        diff = await server.call("git_diff", {"path": "README.md"})
        status = await server.call("git_status")

    assert not marker.exists()
    assert (ws / ".git" / "config").read_bytes() == config_before
    assert not (ws / ".git" / "hooks" / "pre-commit").exists()
    assert not (ws / ".git" / "objects" / "info" / "alternates").exists()
    assert not (ws / "vendor").exists()  # refused before any parent directory was made
    assert "+Changed." in diff["content"]
    assert status["content"] == "## main\n M README.md\n?? .gitattributes\n?? config_link\n?? meta\n"


async def through_the_broker(
    make_settings: Callable[..., Settings], tmp_path: Path, server: ToolsServer, attack: list[Any]
) -> ToolsCompleted:
    """One `ai.victor.tools.requested` event into the broker ingress; the tools reply reaches a recorder."""
    recorder = EventRecorder()
    async with running(recorder) as sink:
        triggers = [
            trigger_manifest("tools", server.url + "/", filter={"type": TOOLS_REQUESTED}),
            trigger_manifest("sink", sink + "/", filter={"type": TOOLS_COMPLETED}),
        ]
        async with mesh(make_settings(), tmp_path / "mesh", broker_manifest(), *triggers) as (ingress, _):
            request = ToolsRequested(
                conversation_id="git-attack",
                turn=1,
                calls=[ToolCall(id=f"c{i}", name=n, arguments=a) for i, (n, a) in enumerate(attack)],
            )
            await publish(ingress, new_event(TOOLS_REQUESTED, "/tests/git-attack", request))
            replies = await recorder.wait_for(lambda event: event.type == TOOLS_COMPLETED)
    assert len(replies) == 1
    return msgspec.json.decode(replies[0].data or b"", type=ToolsCompleted)


def plant(ws: Path, config: str) -> None:
    """What a repository unpacked into the workspace may already hold: its own config and attributes."""
    with (ws / ".git" / "config").open("a") as handle:
        handle.write(config)
    (ws / ".gitattributes").write_text("* filter=x diff=x\n")
    (ws / "README.md").write_text("# Demo\n\nChanged.\n")


@pytest.mark.parametrize(
    "section",
    [
        '[filter "x"]\n\tclean = {cmd}\n\tsmudge = {cmd}\n\trequired = true\n',
        '[filter "x"]\n\tprocess = {cmd}\n',
        '[filter "MiXed.Case"]\n\tclean = {cmd}\n',
        '[diff "x"]\n\ttextconv = {cmd}\n\tcommand = {cmd}\n',
        "[diff]\n\texternal = {cmd}\n",
        "[core]\n\tfsmonitor = {cmd}\n\tpager = {cmd}\n\tsshCommand = {cmd}\n",
        "[core]\n\thooksPath = hooks-here\n",
        "[log]\n\tshowSignature = true\n[gpg]\n\tprogram = {cmd}\n",
        "[core]\n\tattributesFile = {attributes}\n",
    ],
)
async def test_a_planted_repository_config_runs_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path, section: str
) -> None:
    marker = tmp_path / "pwned"
    attributes = tmp_path / "outside-attributes"
    attributes.write_text("* filter=x\n")
    cmd = marker_command(marker)
    async with tools_server(make_settings) as server:
        ws = server.workspace
        plant(ws, "\n" + section.format(cmd=cmd, attributes=attributes))
        if "MiXed" in section:
            (ws / ".gitattributes").write_text("* filter=MiXed.Case\n")
        hooks = ws / "hooks-here"
        hooks.mkdir()
        for hook in ("post-index-change", "pre-commit", "post-checkout"):
            (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
            (hooks / hook).chmod(0o755)
        outcomes = [
            await server.call("git_diff", {"path": "README.md"}),
            await server.call("git_diff", {"revision": "HEAD~1"}),
            await server.call("git_status"),
            await server.call("git_log", {"max_count": 1}),
        ]
    assert not marker.exists()
    assert [o["is_error"] for o in outcomes] == [False] * 4, outcomes
    assert "-A tiny project for the tools tests.\n+Changed." in outcomes[0]["content"]
    assert outcomes[3]["content"].endswith("Ada Add the app\n")


async def test_a_repository_that_reads_another_is_refused(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "secret.txt").write_text("OTHER-REPOSITORY-SECRET\n")
    git(other, "init", "-q", "-b", "main")
    git(other, "add", "secret.txt")
    git(other, "commit", "-q", "-m", "secret")
    secret_blob = git(other, "rev-parse", "HEAD:secret.txt").strip()
    async with tools_server(make_settings) as server:
        ws = server.workspace
        dot_git = ws / ".git"
        answers: dict[str, dict[str, Any]] = {}

        (dot_git / "objects" / "info").mkdir(exist_ok=True)
        (dot_git / "objects" / "info" / "alternates").write_text(f"{other}/.git/objects\n")
        answers["alternates"] = await server.call("git_diff", {"revision": secret_blob})
        (dot_git / "objects" / "info" / "alternates").unlink()

        (dot_git / "commondir").write_text(f"{other}/.git\n")
        answers["commondir"] = await server.call("git_log")
        (dot_git / "commondir").unlink()

        (dot_git / "refs" / "heads" / "stolen").symlink_to(other / ".git" / "refs" / "heads" / "main")
        answers["symlink"] = await server.call("git_log")
        (dot_git / "refs" / "heads" / "stolen").unlink()

        (tmp_path / "included").write_text(filter_config(tmp_path / "pwned"))
        with (dot_git / "config").open("a") as handle:
            handle.write(f"[include]\n\tpath = {tmp_path / 'included'}\n")
        answers["include"] = await server.call("git_status")

    for name, outcome in answers.items():
        assert (outcome["is_error"], outcome["error"]) == (True, "unsafe_repository"), name
        assert "OTHER-REPOSITORY-SECRET" not in outcome["content"]
    assert not (tmp_path / "pwned").exists()


async def test_git_tool_arguments_are_data_not_options(make_settings: Callable[..., Settings]) -> None:
    async with tools_server(make_settings) as server:
        (server.workspace / ":(top)README.md").write_text("odd name\n")
        magic = await server.call("git_status", {"path": ":(top)README.md"})
        glob_magic = await server.call("git_log", {"path": ":(glob)**"})
        option = await server.client.post(
            "/v1/tools/git_diff", json={"revision": "--output=/tmp/victor-git-output"}
        )
        dashed = await server.call("git_log", {"path": "--all"})
    # A pathspec is a literal name: the odd file is reported, nothing else.
    assert magic["content"] == "## main\n?? :(top)README.md\n"
    assert glob_magic["content"] == "no commits"
    assert option.status_code == 422
    assert not os.path.exists("/tmp/victor-git-output")
    assert dashed["content"] == "no commits"
