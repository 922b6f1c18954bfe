"""grep, glob, list_directory and code_search's local walk leave out what .gitignore excludes, as
the indexer does; list_directory shows it on request."""

from __future__ import annotations

from collections.abc import Callable

from common.settings import Settings
from tests.support.tools import tools_server


async def test_the_tree_tools_honour_gitignore_at_every_level(make_settings: Callable[..., Settings]) -> None:
    async with tools_server(make_settings) as server:
        ws = server.workspace
        (ws / ".gitignore").write_text("build/\n*.log\n!keep.log\n")
        (ws / "build").mkdir()
        (ws / "build" / "out.py").write_text("NEEDLE in build output\n")
        (ws / "debug.log").write_text("NEEDLE in a log\n")
        (ws / "keep.log").write_text("NEEDLE kept by a negation\n")
        (ws / "src" / "gen").mkdir(parents=True)
        (ws / "src" / ".gitignore").write_text("gen/\n")
        (ws / "src" / "gen" / "made.py").write_text("NEEDLE generated\n")
        (ws / "src" / "real.py").write_text("NEEDLE real code\n")
        grep = await server.call("grep", {"pattern": "NEEDLE"})
        glob = await server.call("glob", {"pattern": "**/*"})
        listing = await server.call("list_directory", {"path": "."})
        everything = await server.call("list_directory", {"path": ".", "include_ignored": True})
        inner = await server.call("list_directory", {"path": "src"})
    assert grep["content"].splitlines() == [
        "keep.log:1:NEEDLE kept by a negation",
        "src/real.py:1:NEEDLE real code",
    ]
    found = glob["content"].splitlines()
    assert "build/out.py" not in found and "debug.log" not in found and "src/gen/made.py" not in found
    assert {"keep.log", "src/real.py", "README.md"} <= set(found)
    names = [line.split("\t")[0] for line in listing["content"].splitlines()[1:]]
    assert "build/" not in names and "debug.log" not in names and "keep.log" in names
    all_names = [line.split("\t")[0] for line in everything["content"].splitlines()[1:]]
    assert "build/" in all_names and "debug.log" in all_names
    # src/.gitignore leaves gen/ out; the fixture's own src files stay.
    assert [line.split("\t")[0] for line in inner["content"].splitlines()[1:]] == [
        "app.py",
        "real.py",
        "util/",
    ]
