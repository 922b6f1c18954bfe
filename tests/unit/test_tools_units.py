"""Unit specifications of the tools pieces: settings, registry, workspace, globs, ordering, ranking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.settings import SettingsError
from common.workspace import Workspace, WorkspaceError, is_binary
from functions.tools.catalog import build_catalog
from functions.tools.execution import conflicts
from functions.tools.registry import InvalidArguments, PathAccess, ToolDefinition, ToolRegistry
from functions.tools.selection import BM25, RRF_K, reciprocal_rank_fusion, tokens
from functions.tools.settings import load_tools_settings
from functions.tools.toolset.files import FILE_TOOLS, file_filter, glob_regex


def test_tools_settings_parse_and_name_the_bad_variable() -> None:
    parsed = load_tools_settings(
        {
            "VICTOR_ENABLE_RUN_COMMAND": "yes",
            "VICTOR_RUN_COMMAND_ALLOWLIST": "git, pytest ,",
            "VICTOR_MAX_FILE_SIZE": "1MB",
        }
    )
    assert (parsed.enable_run_command, parsed.run_command_allowlist, parsed.max_file_size) == (
        True,
        ("git", "pytest"),
        1024 * 1024,
    )
    assert load_tools_settings({}).enable_run_command is False
    with pytest.raises(SettingsError, match=r"^VICTOR_RUN_COMMAND_ALLOWLIST: expected program names"):
        load_tools_settings({"VICTOR_RUN_COMMAND_ALLOWLIST": "/bin/sh"})
    with pytest.raises(SettingsError, match=r"^VICTOR_TOOL_TIMEOUT: expected a number"):
        load_tools_settings({"VICTOR_TOOL_TIMEOUT": "soon"})


def test_the_catalog_version_is_a_hash_of_every_definition() -> None:
    first, second = build_catalog(), build_catalog()
    assert first.version == second.version
    edited = ToolDefinition(**{**FILE_TOOLS[0].__dict__, "description": "Read a file."})
    assert ToolRegistry([edited, *FILE_TOOLS[1:]]).version != ToolRegistry(FILE_TOOLS).version
    with pytest.raises(ValueError, match="two tools are named 'read_file'"):
        ToolRegistry([FILE_TOOLS[0], FILE_TOOLS[0]])


def test_arguments_are_checked_strictly_and_errors_name_the_field() -> None:
    read_file = build_catalog().get("read_file")
    assert read_file.decode({"path": "a.txt"}).limit == 2000
    with pytest.raises(InvalidArguments, match=r"Expected `int`, got `str` - at `\$.limit`"):
        read_file.decode({"path": "a", "limit": "5"})
    with pytest.raises(InvalidArguments, match=r"Expected `int` >= 1 - at `\$.offset`"):
        read_file.decode({"path": "a", "offset": 0})
    with pytest.raises(InvalidArguments, match="Object contains unknown field `follow`"):
        read_file.decode({"path": "a", "follow": True})
    assert read_file.schema()["properties"]["offset"] == {
        "description": "First line to return (1-based)",
        "type": "integer",
        "minimum": 1,
        "default": 1,
    }


def test_relative_paths_are_checked_lexically(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, max_file_size=10)
    assert ws.relative("a//b/./c") == "a/b/c"
    assert ws.relative("") == "."
    assert ws.relative(str(tmp_path / "x")) == "x"
    cases = {
        "../x": "outside_workspace",
        "a/../../x": "outside_workspace",
        "/etc": "outside_workspace",
        str(tmp_path) + "-evil/x": "outside_workspace",
        "a\x00b": "invalid_path",
        "d/" * 2100: "invalid_path",
        "n" * 256: "invalid_path",
    }
    for path, code in cases.items():
        with pytest.raises(WorkspaceError) as refused:
            ws.relative(path)
        assert refused.value.code == code, path


def test_symlinks_inside_the_workspace_are_followed_and_writes_do_not_follow_them_out(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f.txt").write_text("inside")
    (root / "alias").symlink_to("real")
    (root / "f_link").symlink_to("real/f.txt")
    outside = tmp_path / "out.txt"
    outside.write_text("outside")
    (root / "out_link").symlink_to(outside)
    ws = Workspace(root, max_file_size=100)
    assert ws.read("alias/f.txt").text == "inside"
    assert ws.read("f_link").text == "inside"
    ws.write("alias/new.txt", b"n")
    assert (root / "real" / "new.txt").read_text() == "n"
    with pytest.raises(WorkspaceError) as refused:
        ws.write("out_link", b"x")
    assert refused.value.code == "outside_workspace"
    assert outside.read_text() == "outside"


def test_special_files_binary_and_size_limits(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "big").write_bytes(b"a" * 11)
    (tmp_path / "latin1").write_bytes("caf\xe9".encode("latin-1"))
    ws = Workspace(tmp_path, max_file_size=10)
    for path, code in (("pipe", "special_file"), ("big", "too_large"), (".", "is_directory")):
        with pytest.raises(WorkspaceError) as refused:
            ws.read(path)
        assert refused.value.code == code
    assert ws.read("latin1").binary is True
    with pytest.raises(WorkspaceError, match="over the 10-byte limit"):
        ws.write("new", b"b" * 11)
    assert (is_binary(b"text\n"), is_binary(b"\x00abc"), is_binary(b"\xff\xfe")) == (False, True, True)


def test_globs_span_directories_only_with_double_stars() -> None:
    assert glob_regex("*.py").match("a.py") and not glob_regex("*.py").match("src/a.py")
    assert glob_regex("**/*.py").match("a.py") and glob_regex("**/*.py").match("src/deep/a.py")
    assert glob_regex("src/?.md").match("src/a.md") and not glob_regex("src/?.md").match("src/ab.md")
    assert glob_regex("[!a]*.txt").match("b.txt") and not glob_regex("[!a]*.txt").match("a.txt")
    named = file_filter("*.py")
    assert named("deep/dir/x.py") and not named("x.pyc")
    anchored = file_filter("src/*.py")
    assert anchored("src/x.py") and not anchored("lib/src/x.py")


def test_calls_conflict_only_when_one_writes_what_the_other_touches() -> None:
    write_a = PathAccess(reads=("a.txt",), writes=("a.txt",))
    read_a = PathAccess(reads=("a.txt",))
    read_b = PathAccess(reads=("b.txt",))
    read_dir = PathAccess(reads=("src",))
    write_in_dir = PathAccess(writes=("src/x.py",))
    command = PathAccess(reads=("*",))
    assert conflicts(write_a, read_a) and conflicts(read_a, write_a) and conflicts(write_a, write_a)
    assert not conflicts(read_a, read_b) and not conflicts(write_a, read_b)
    assert conflicts(read_dir, write_in_dir) and conflicts(write_in_dir, read_dir)
    assert conflicts(write_a, command) and not conflicts(command, command)
    assert conflicts(PathAccess(writes=("x",)), PathAccess(reads=(".",)))


def test_bm25_ranks_rarer_matching_terms_higher() -> None:
    documents = [tokens("read a file"), tokens("search files with a regex"), tokens("git commit history")]
    index = BM25(documents)
    scores = index.scores(tokens("regex search"))
    assert scores[1] > 0 and scores[0] == 0 and scores[2] == 0
    assert index.scores(tokens("files"))[0] == index.scores(tokens("file"))[0] > 0  # plural folded
    assert tokens("Git_Log: recent commits!") == ["git", "log", "recent", "commit"]
    assert index.scores([]) == [0.0, 0.0, 0.0]


def test_reciprocal_rank_fusion_adds_one_over_k_plus_rank() -> None:
    fused = reciprocal_rank_fusion([[2, 0], [0, 1, 2]], 3)
    assert fused == pytest.approx(
        [1 / (RRF_K + 2) + 1 / (RRF_K + 1), 1 / (RRF_K + 2), 1 / (RRF_K + 1) + 1 / (RRF_K + 3)]
    )


def test_writes_replace_files_whole_keep_their_mode_and_go_through_inside_symlinks(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("old")
    (tmp_path / "run.sh").chmod(0o750)
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "alias.txt").symlink_to("real.txt")
    ws = Workspace(tmp_path, max_file_size=100)
    ws.write("run.sh", b"new")
    ws.write("alias.txt", b"through the link")
    ws.write("a/b/c.txt", b"deep")
    assert (tmp_path / "run.sh").read_text() == "new"
    assert (tmp_path / "run.sh").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "alias.txt").is_symlink()
    assert (tmp_path / "real.txt").read_text() == "through the link"
    assert (tmp_path / "a/b/c.txt").read_text() == "deep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "alias.txt", "real.txt", "run.sh"]
    with pytest.raises(WorkspaceError) as refused:
        ws.write("a", b"x")
    assert refused.value.code == "is_directory"
