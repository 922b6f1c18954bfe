"""Which workspace files indexing reads: confinement, .gitignore, size and binary rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.workspace import SECRET_FILES
from functions.embeddings.workspace_files import SelectionRefused, select_files


def make_tree(root: Path) -> Path:
    workspace = root / "workspace"
    for relative, content in {
        "src/app.py": "print('app')\n",
        "src/lib/util.py": "x = 1\n",
        "src/lib/.gitignore": "generated_*.py\n",
        "src/lib/generated_api.py": "ignored by the nested .gitignore\n",
        ".gitignore": "*.log\ndist/\nkeep/*\n!keep/this.txt\n",
        "debug.log": "ignored\n",
        "dist/bundle.js": "ignored\n",
        "keep/this.txt": "re-included by negation\n",
        "keep/that.txt": "ignored\n",
        ".git/config": "[core]\n",
        "big.txt": "y" * 2000,
    }.items():
        path = workspace / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (workspace / "image.png").write_bytes(b"\x89PNG\x00\x00data")
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours\n")
    (workspace / "escape.txt").symlink_to(outside / "secret.txt")
    (workspace / "escape_dir").symlink_to(outside, target_is_directory=True)
    (workspace / "inside_link.py").symlink_to(workspace / "src" / "app.py")
    return workspace


def names(workspace: Path, requested: str) -> list[str]:
    selection = select_files(workspace, requested, max_file_bytes=1000, max_files=100)
    return [p.relative_to(workspace).as_posix() for p in selection.files]


def test_a_directory_yields_text_files_honouring_every_gitignore(tmp_path: Path) -> None:
    workspace = make_tree(tmp_path)
    selection = select_files(workspace, ".", max_file_bytes=1000, max_files=100)
    assert sorted(p.relative_to(workspace).as_posix() for p in selection.files) == [
        ".gitignore",
        "keep/this.txt",
        "src/app.py",
        "src/lib/.gitignore",
        "src/lib/util.py",
    ]
    assert selection.skipped == {
        "big.txt": "larger than 1000 bytes",
        "escape.txt": "leads outside WORKSPACE_DIR",
        "escape_dir": "symlinked directory",
        "image.png": "binary",
    }


def test_globs_and_absolute_paths_inside_the_workspace_are_accepted(tmp_path: Path) -> None:
    workspace = make_tree(tmp_path)
    assert names(workspace, "src/**/*.py") == ["src/app.py", "src/lib/util.py"]
    assert names(workspace, str(workspace / "src" / "app.py")) == ["src/app.py"]
    assert names(workspace, "*.log") == []  # matched, then ignored


@pytest.mark.parametrize(
    ("requested", "status", "message"),
    [
        (
            "../outside/secret.txt",
            403,
            "path '../outside/secret.txt' contains '..'; give a path inside WORKSPACE_DIR",
        ),
        (
            "src/../../outside",
            403,
            "path 'src/../../outside' contains '..'; give a path inside WORKSPACE_DIR",
        ),
        ("/etc/passwd", 403, "path '/etc/passwd' is outside WORKSPACE_DIR"),
        ("missing.py", 404, "path 'missing.py' does not exist in WORKSPACE_DIR"),
        ("  ", 422, "path is empty; give a file, directory or glob inside WORKSPACE_DIR"),
    ],
)
def test_paths_leaving_the_workspace_or_missing_are_refused(
    tmp_path: Path, requested: str, status: int, message: str
) -> None:
    workspace = make_tree(tmp_path)
    with pytest.raises(SelectionRefused) as refused:
        select_files(workspace, requested, max_file_bytes=1000, max_files=100)
    assert (refused.value.status, refused.value.message) == (status, message)


def test_a_symlink_out_of_the_workspace_is_never_read(tmp_path: Path) -> None:
    workspace = make_tree(tmp_path)
    selection = select_files(workspace, "escape.txt", max_file_bytes=1000, max_files=100)
    assert (selection.files, selection.skipped) == ([], {"escape.txt": "leads outside WORKSPACE_DIR"})
    assert names(workspace, "escape_dir/*") == []
    assert os.path.realpath(workspace / "inside_link.py") == str(workspace / "src" / "app.py")


def test_the_file_limit_stops_the_walk_and_says_so(tmp_path: Path) -> None:
    workspace = make_tree(tmp_path)
    selection = select_files(workspace, "src", max_file_bytes=1000, max_files=1)
    assert len(selection.files) == 1
    assert selection.skipped["..."] == "stopped at VICTOR_INDEX_MAX_FILES=1 files"


def test_only_a_directory_walked_whole_is_reported_complete(tmp_path: Path) -> None:
    workspace = make_tree(tmp_path)

    def complete(requested: str, max_files: int = 100) -> str | None:
        return select_files(workspace, requested, max_file_bytes=1000, max_files=max_files).complete_directory

    assert [complete("."), complete("src/"), complete("./src/lib"), complete(str(workspace))] == [
        "",
        "src",
        "src/lib",
        "",
    ]
    assert [complete("src/*.py"), complete("src/app.py"), complete("src", max_files=1)] == [None, None, None]


def test_a_file_swapped_for_a_symlink_after_selection_is_not_read(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from functions.embeddings import indexer
    from functions.embeddings.settings import load_embedding_settings

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "notes.md").write_text("ordinary notes\n")
    (workspace / "kept.md").write_text("kept text\n")
    canary = tmp_path / "canary.txt"
    canary.write_text("SECRET outside the workspace\n")
    real_select = indexer.select_files

    def select_then_swap(*args: object, **kwargs: object) -> object:
        selection = real_select(*args, **kwargs)  # type: ignore[arg-type]
        (workspace / "notes.md").unlink()  # the race: after the check, before the read
        (workspace / "notes.md").symlink_to(canary)
        return selection

    monkeypatch.setattr(indexer, "select_files", select_then_swap)
    service = SimpleNamespace(settings=load_embedding_settings({}), secret_files=SECRET_FILES)
    sources, skipped, _ = indexer.read_sources(workspace.resolve(), ".", service)  # type: ignore[arg-type]
    assert [(s.path, s.text) for s in sources] == [("kept.md", "kept text\n")]
    assert skipped == {"notes.md": "'notes.md' is a symlink that leads outside the workspace"}
