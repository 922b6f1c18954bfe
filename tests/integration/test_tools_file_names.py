"""A file whose name is not UTF-8 (bytes names on Linux) cannot break a walk: list_directory marks it,
glob and grep leave it out and say so, the rest of its tree is still walked, and a tool given such a
name answers a precise error."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from common.settings import Settings
from common.workspace import Workspace, WorkspaceError
from tests.support.tools import tools_server


def make_bad_names(workspace: Path) -> None:
    """`caf\\xe9.txt` (Latin-1, not UTF-8) beside good files, and a directory named in Latin-1."""
    root = os.fsencode(workspace)
    (workspace / "names").mkdir()
    (workspace / "names" / "good.txt").write_text("NEEDLE in a good file\n")
    with open(os.path.join(root, b"names", b"caf\xe9.txt"), "w") as bad:
        bad.write("NEEDLE in a file named in Latin-1\n")
    os.mkdir(os.path.join(root, b"names", b"r\xe9sum\xe9"))
    with open(os.path.join(root, b"names", b"r\xe9sum\xe9", b"inner.txt"), "w") as inner:
        inner.write("NEEDLE under a directory named in Latin-1\n")


async def test_the_tree_tools_leave_out_names_that_are_not_utf8_and_say_so(
    make_settings: Callable[..., Settings],
) -> None:
    async with tools_server(make_settings) as server:
        make_bad_names(server.workspace)
        listing = await server.call("list_directory", {"path": "names"})
        glob = await server.call("glob", {"pattern": "**/*.txt", "path": "names"})
        grep = await server.call("grep", {"pattern": "NEEDLE", "path": "names"})
    assert not listing["is_error"], listing
    assert listing["content"].splitlines() == [
        "names: 3 entries",
        "caf\\xe9.txt\t(name is not UTF-8; no tool can open it)",
        "good.txt\t22 bytes",
        "r\\xe9sum\\xe9\t(name is not UTF-8; no tool can open it)",
    ]
    assert {"name": "caf\\xe9.txt", "kind": "not_utf8", "size": None} in listing["structured"]["entries"]
    assert glob["structured"]["paths"] == ["names/good.txt"]
    assert sorted(glob["structured"]["not_utf8"]) == ["names/caf\\xe9.txt", "names/r\\xe9sum\\xe9/"]
    assert glob["content"].splitlines()[0] == "names/good.txt"
    assert glob["content"].splitlines()[1].startswith("[left out 2 not UTF-8 (no tool can open them): ")
    assert [match["path"] for match in grep["structured"]["matches"]] == ["names/good.txt"]
    assert sorted(grep["structured"]["not_utf8"]) == ["names/caf\\xe9.txt", "names/r\\xe9sum\\xe9/"]


def test_a_path_that_is_not_utf8_is_refused_with_a_precise_error(tmp_path: Path) -> None:
    # JSON cannot carry such a path; a caller in process (MCP, the indexer) might.
    workspace = Workspace(tmp_path, max_file_size=1000)
    with pytest.raises(WorkspaceError) as refused:
        workspace.read(os.fsdecode(b"caf\xe9.txt"))
    assert refused.value.code == "invalid_path"
    assert refused.value.message == (
        "the path 'caf\\\\xe9.txt' is not valid UTF-8; the tools only open UTF-8 names"
    )
