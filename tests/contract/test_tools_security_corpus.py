"""Workspace confinement: escape attempts through HTTP, CloudEvents and MCP are all refused.

A canary file lives outside the workspace (and a second one in a sibling
directory whose name starts like the workspace's). Every attempt must come
back as an error, no answer may contain the canary text, and afterwards the
canaries must be unchanged: same content, same mtime, and (where the file
system records reads) the same atime.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
from mcp import Client

from common.cloudevents import from_http, new_event, to_binary
from common.workspace import Workspace, WorkspaceError
from eventing.schemas.tools import TOOLS_REQUESTED, ToolCall, ToolsCompleted, ToolsRequested
from functions.tools.settings import ToolsSettings
from tests.support.tools import READ_PARENT_ENVIRON, READ_PARENT_MEMORY, git_escapes, tools_server

CANARY = "CANARY-7f3a-do-not-read"
SECRETS = (
    ".env",
    ".env.production",
    "deploy/server.pem",
    "deploy/tls.KEY",
    ".ssh/id_rsa",
    ".ssh/id_ed25519.pub",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".git-credentials",
)
OLD_ATIME = 1_000_000_000  # 2001: older than the mtime, so a read would move it (relatime)
RUN_COMMAND = ToolsSettings(
    enable_run_command=True,
    run_command_allowlist=("cat", "ls", "git", "python3"),
    max_file_size=64 * 1024,
)


def prepare(tmp_path: Path) -> tuple[Path, Path]:
    """The canaries outside, and the traps inside the workspace (symlinks, a FIFO, a big file)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = outside / "canary.txt"
    canary.write_text(CANARY)
    sibling = tmp_path / "workspace-evil"
    sibling.mkdir()
    (sibling / "canary.txt").write_text(CANARY)
    for path in (canary, sibling / "canary.txt"):
        os.utime(path, (OLD_ATIME, path.stat().st_mtime))
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    (workspace / "link_out").symlink_to(outside)
    (workspace / "canary_link").symlink_to(canary)
    (workspace / "nested").mkdir()
    (workspace / "nested" / "up").symlink_to("../../outside")
    (workspace / "chain2").symlink_to(canary)
    (workspace / "chain1").symlink_to("chain2")
    (workspace / "root_link").symlink_to("/")
    os.mkfifo(workspace / "fifo")
    (workspace / "big.txt").write_text("x" * (128 * 1024))
    # A hard link passes every path check: it is the outside file itself.
    os.link(canary, workspace / "hardlink.txt")
    # Secret files, directly and behind a harmless-looking symlink.
    for name in SECRETS:
        path = workspace / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"TOKEN={CANARY}\n")
    (workspace / "notes.txt").symlink_to(".env")
    return canary, sibling / "canary.txt"


def attempts(tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    canary = str(tmp_path / "outside" / "canary.txt")
    workspace = str(tmp_path / "workspace")
    reads = [
        "../outside/canary.txt",
        "../../../../../../etc/passwd",
        "src/../../outside/canary.txt",
        "./../outside/canary.txt",
        canary,
        f"{workspace}/../outside/canary.txt",
        str(tmp_path / "workspace-evil" / "canary.txt"),
        "/etc/passwd",
        "/proc/self/environ",
        f"/proc/self/root{canary}",
        "/proc/self/fd/0",
        "/dev/zero",
        "/dev/random",
        "%2e%2e/outside/canary.txt",
        "%2e%2e%2foutside%2fcanary.txt",
        "..%2f..%2foutside%2fcanary.txt",
        "....//outside/canary.txt",
        "..\\outside\\canary.txt",
        "link_out/canary.txt",
        "canary_link",
        "nested/up/canary.txt",
        "chain1",
        "root_link/etc/passwd",
        "src/app.py\x00../../outside/canary.txt",
        "\x00",
        "a/" * 3000 + "x",
        "n" * 300,
        "fifo",
        "big.txt",
        "hardlink.txt",
        "notes.txt",
        *SECRETS,
    ]
    found: list[tuple[str, dict[str, Any]]] = [("read_file", {"path": path}) for path in reads]
    found += [
        ("list_directory", {"path": "link_out"}),
        ("list_directory", {"path": "../outside"}),
        ("list_directory", {"path": "nested/up"}),
        ("glob", {"pattern": "*", "path": "link_out"}),
        ("glob", {"pattern": "**/*", "path": "/"}),
        ("grep", {"pattern": "CANARY", "path": "../outside"}),
        ("grep", {"pattern": "CANARY", "path": "link_out"}),
        ("write_file", {"path": "../outside/canary.txt", "content": "owned"}),
        ("write_file", {"path": canary, "content": "owned"}),
        ("write_file", {"path": "link_out/canary.txt", "content": "owned"}),
        ("write_file", {"path": "link_out/new.txt", "content": "owned"}),
        ("write_file", {"path": "canary_link", "content": "owned"}),
        ("write_file", {"path": "nested/up/new.txt", "content": "owned"}),
        ("edit_file", {"path": "canary_link", "old_text": "CANARY", "new_text": "owned"}),
        ("edit_file", {"path": "chain1", "old_text": "CANARY", "new_text": "owned"}),
        ("edit_file", {"path": "hardlink.txt", "old_text": "CANARY", "new_text": "owned"}),
        (
            "edit_file",
            {"path": ".env", "old_text": "TOKEN", "new_text": "ANTHROPIC_BASE_URL=http://evil\nTOKEN"},
        ),
        ("write_file", {"path": ".env", "content": "ANTHROPIC_BASE_URL=http://evil.example\n"}),
        ("write_file", {"path": "notes.txt", "content": "ANTHROPIC_BASE_URL=http://evil.example\n"}),
        ("grep", {"pattern": "TOKEN", "path": ".env"}),
        ("grep", {"pattern": "CANARY", "path": "hardlink.txt"}),
        ("git_diff", {"path": "../outside"}),
        ("git_log", {"path": "/etc"}),
        ("run_command", {"argv": ["cat", "../outside/canary.txt"]}),
        ("run_command", {"argv": ["cat", canary]}),
        ("run_command", {"argv": ["cat", "canary_link"]}),
        ("run_command", {"argv": ["cat", "link_out/canary.txt"]}),
        ("run_command", {"argv": ["ls", "--directory=/"]}),
        ("run_command", {"argv": ["ls"], "cwd": "../outside"}),
        ("run_command", {"argv": ["ls"], "cwd": "link_out"}),
        ("run_command", {"argv": ["/bin/cat", "README.md"]}),
        ("run_command", {"argv": ["sh", "-c", f"cat {canary}"]}),
        # git through run_command: options that run programs or name paths, and aliases (issue 12, item 5).
        *(("run_command", {"argv": ["git", *argv]}) for argv, _ in git_escapes(canary)),
        # A same-user child reading the tools process's environment or memory through /proc.
        ("run_command", {"argv": ["python3", "-c", READ_PARENT_ENVIRON]}),
        ("run_command", {"argv": ["python3", "-c", READ_PARENT_MEMORY]}),
    ]
    return found


def refused_over_http(response_status: int, body: dict[str, Any]) -> bool:
    return 400 <= response_status < 500 or (response_status == 200 and body.get("is_error") is True)


def assert_untouched(tmp_path: Path, canaries: tuple[Path, Path], mtimes: list[int]) -> None:
    """Same content and mtime, nothing added beside them (call after the atime check: this reads)."""
    for path, mtime in zip(canaries, mtimes, strict=True):
        assert path.stat().st_mtime_ns == mtime
        assert path.read_bytes() == CANARY.encode()
    assert sorted(os.listdir(tmp_path / "outside")) == ["canary.txt"]
    assert sorted(os.listdir(tmp_path / "workspace-evil")) == ["canary.txt"]


def atime_is_recorded(tmp_path: Path) -> bool:
    """Whether this file system moves atime on a read (noatime mounts do not)."""
    probe = tmp_path / "atime-probe"
    probe.write_text("probe")
    os.utime(probe, (OLD_ATIME, probe.stat().st_mtime))
    probe.read_text()
    return probe.stat().st_atime_ns != OLD_ATIME * 1_000_000_000


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[tuple[Path, Path], list[tuple[str, dict[str, Any]]]]:
    (tmp_path / "workspace").mkdir(exist_ok=True)
    return prepare(tmp_path), attempts(tmp_path)


async def test_every_escape_attempt_is_refused_over_http_cloudevents_and_mcp(
    make_settings, tmp_path: Path, corpus
) -> None:
    canaries, calls = corpus
    assert len(calls) >= 40
    mtimes = [path.stat().st_mtime_ns for path in canaries]
    atime_meaningful = atime_is_recorded(tmp_path)
    async with tools_server(make_settings, RUN_COMMAND) as server:
        # HTTP, one call at a time
        for name, arguments in calls:
            response = await server.client.post(f"/v1/tools/{name}", json=arguments)
            body = response.json()
            assert refused_over_http(response.status_code, body), (name, arguments, body)
            assert CANARY not in response.text

        # CloudEvents: the whole corpus as one turn
        request = ToolsRequested(
            conversation_id="escape",
            turn=1,
            calls=[
                ToolCall(id=f"call-{i}", name=name, arguments=args) for i, (name, args) in enumerate(calls)
            ],
        )
        headers, data = to_binary(new_event(TOOLS_REQUESTED, "/tests/security", request))
        response = await server.client.post("/", headers=headers, content=data)
        assert response.status_code == 200, response.text
        completed = msgspec.json.decode(
            from_http(response.headers, response.content, max_bytes=1 << 24).data or b"", type=ToolsCompleted
        )
        assert [r.id for r in completed.results] == [f"call-{i}" for i in range(len(calls))]
        for result, (name, arguments) in zip(completed.results, calls, strict=True):
            assert result.is_error, (name, arguments, result.content)
            assert CANARY not in result.content

        # MCP, with the mcp package's own client
        async with Client(f"{server.url}/mcp") as mcp_client:
            for name, arguments in calls:
                result = await mcp_client.call_tool(name, arguments)
                text = "".join(getattr(part, "text", "") for part in result.content)
                assert result.is_error, (name, arguments, text)
                assert CANARY not in text

        # Allowed operations over the whole workspace do not reach through symlinks either.
        for name, arguments in [
            ("grep", {"pattern": "CANARY"}),
            ("glob", {"pattern": "**/*.txt"}),
            ("list_directory", {"path": "."}),
        ]:
            outcome = await server.call(name, arguments)
            assert CANARY not in outcome["content"]
            assert "canary.txt" not in outcome["content"]

    if atime_meaningful:
        for path in canaries:
            assert path.stat().st_atime_ns == OLD_ATIME * 1_000_000_000, f"{path} was read"
    assert_untouched(tmp_path, canaries, mtimes)


def test_a_symlink_swapped_in_after_the_check_is_refused(tmp_path: Path) -> None:
    """A thread flips `dir` between a real directory and a symlink to the outside while reads run."""
    (tmp_path / "workspace").mkdir()
    canaries = prepare(tmp_path)
    workspace = tmp_path / "workspace"
    inside = workspace / "real"
    inside.mkdir()
    (inside / "canary.txt").write_text("inside")
    link = workspace / "flip"
    stop = threading.Event()

    def flipper() -> None:
        flips = 0
        while not stop.is_set() and flips < 200_000:
            flips += 1
            tmp = workspace / f"flip.{flips % 2}"
            target = "real" if flips % 2 else str(tmp_path / "outside")
            with_link = tmp
            if with_link.is_symlink():
                with_link.unlink()
            with_link.symlink_to(target)
            os.replace(with_link, link)

    ws = Workspace(workspace, max_file_size=1024)
    thread = threading.Thread(target=flipper)
    thread.start()
    outcomes = {"inside": 0, "refused": 0}
    try:
        deadline = 2000
        for _ in range(deadline):
            try:
                content = ws.read("flip/canary.txt")
            except WorkspaceError as exc:
                assert exc.code in ("outside_workspace", "not_found")
                outcomes["refused"] += 1
                continue
            assert content.text == "inside"
            outcomes["inside"] += 1
    finally:
        stop.set()
        thread.join()
    assert outcomes["refused"] > 0
    assert canaries[0].read_text() == CANARY


def test_an_opened_descriptor_outside_the_root_is_refused(tmp_path: Path) -> None:
    """The after-open check itself: a descriptor whose real path is outside never passes."""
    (tmp_path / "workspace").mkdir()
    canary, _ = prepare(tmp_path)
    ws = Workspace(tmp_path / "workspace", max_file_size=1024)
    fd = os.open(canary, os.O_RDONLY)
    with pytest.raises(WorkspaceError) as refused:
        ws._verify(fd, "canary")
    assert refused.value.code == "outside_workspace"
    with pytest.raises(OSError):
        os.fstat(fd)  # _verify closed it
