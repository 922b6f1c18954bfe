"""Which files under WORKSPACE_DIR a path or glob names, under the tools' confinement rules.

A request names a path or glob relative to the workspace. It may not be
absolute outside the workspace or contain `..`; every match is resolved with
realpath and must stay inside the workspace (so no symlink leads out); files
over the size limit or that look binary are skipped; `.gitignore` files at
every level are honoured (with `pathspec`, git's own pattern rules), and `.git`
is never read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from common.workspace import BINARY_SNIFF_BYTES, GitIgnore, Workspace, is_utf8_name, shown_name, starts_binary


class SelectionRefused(ValueError):
    """The requested path cannot be used; the message says why (answered as 4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FileSelection:
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    # When the request named one directory and it was walked whole: that directory ("" for the root).
    complete_directory: str | None = None


def relative_pattern(workspace: Path, requested: str) -> str:
    """The request as a workspace-relative POSIX pattern; refuses `..` and outside absolutes.

    Not `Workspace.relative`: a request here may be a glob, and its refusals carry the
    indexer's HTTP statuses and wording; every match is then checked with `Workspace.contains`.
    """
    text = requested.strip().replace("\\", "/")
    if not text:
        raise SelectionRefused(422, "path is empty; give a file, directory or glob inside WORKSPACE_DIR")
    if "\x00" in text:
        raise SelectionRefused(422, "path contains a NUL byte")
    if text.startswith("/"):
        root = str(workspace).rstrip("/") + "/"
        if text.rstrip("/") == str(workspace):
            return "."
        if not text.startswith(root):
            raise SelectionRefused(403, f"path {requested!r} is outside WORKSPACE_DIR")
        text = text[len(root) :]
    if ".." in PurePosixPath(text).parts:
        raise SelectionRefused(403, f"path {requested!r} contains '..'; give a path inside WORKSPACE_DIR")
    return text or "."


def _inside(confined: Workspace, candidate: Path) -> Path | None:
    real = os.path.realpath(candidate)
    return Path(real) if confined.contains(real) else None


NOT_UTF8 = "name is not UTF-8"


def looks_binary(path: Path) -> bool:
    """The tools' sniff on the file's start, so both call the same files binary."""
    with path.open("rb") as handle:
        return starts_binary(handle.read(BINARY_SNIFF_BYTES))


def select_files(workspace: Path, requested: str, *, max_file_bytes: int, max_files: int) -> FileSelection:
    """The readable text files `requested` names inside `workspace`, and why others were skipped."""
    workspace = Path(os.path.realpath(workspace))
    # The tools' containment check; the size limit is applied here, per file, with a skip reason.
    confined = Workspace(workspace, max_file_size=max_file_bytes)
    pattern = relative_pattern(workspace, requested)
    ignore = GitIgnore(confined)
    direct = workspace / pattern
    has_magic = any(ch in pattern for ch in "*?[")
    if has_magic:
        candidates = sorted(workspace.glob(pattern))
    elif direct.is_dir() or direct.is_symlink() or direct.exists():
        candidates = [direct]
    else:
        raise SelectionRefused(404, f"path {requested!r} does not exist in WORKSPACE_DIR")
    selection = FileSelection()
    seen: set[Path] = set()

    def consider(candidate: Path) -> None:
        relative = PurePosixPath(candidate.relative_to(workspace).as_posix())
        if not is_utf8_name(str(relative)):  # no result, event or store could name it
            selection.skipped[shown_name(str(relative))] = NOT_UTF8
            return
        real = _inside(confined, candidate)
        if real is None:
            selection.skipped[str(relative)] = "leads outside WORKSPACE_DIR"
            return
        if real in seen or not real.is_file():
            return
        if ignore.ignored_path(relative):
            return
        if real.stat().st_size > max_file_bytes:
            selection.skipped[str(relative)] = f"larger than {max_file_bytes} bytes"
            return
        if looks_binary(real):
            selection.skipped[str(relative)] = "binary"
            return
        seen.add(real)
        # A link inside the workspace is indexed under the file it points to, once.
        selection.files.append(real)

    for candidate in candidates:
        if len(selection.files) >= max_files:
            break
        if candidate.is_dir() and not candidate.is_symlink():
            real = _inside(confined, candidate)
            if real is None:
                continue
            for root, dirs, names in os.walk(candidate, followlinks=False):
                base = Path(root)
                rel_root = PurePosixPath(base.relative_to(workspace).as_posix())
                kept = []
                for name in sorted(dirs):
                    relative = rel_root / name if str(rel_root) != "." else PurePosixPath(name)
                    if not is_utf8_name(name):
                        selection.skipped[shown_name(str(relative))] = NOT_UTF8
                        continue
                    if name == ".git" or ignore.ignored(relative, is_dir=True):
                        continue
                    if (base / name).is_symlink():  # os.walk does not follow it; say so
                        selection.skipped[relative.as_posix()] = "symlinked directory"
                        continue
                    kept.append(name)
                dirs[:] = kept
                for name in sorted(names):
                    if len(selection.files) >= max_files:
                        break
                    consider(base / name)
        elif candidate.is_symlink() and candidate.is_dir():
            selection.skipped[candidate.relative_to(workspace).as_posix()] = "symlinked directory"
        else:
            consider(candidate)
    if len(selection.files) >= max_files:
        selection.skipped["..."] = f"stopped at VICTOR_INDEX_MAX_FILES={max_files} files"
    elif not has_magic and direct.is_dir() and not direct.is_symlink():
        selection.complete_directory = "" if pattern in (".", "./") else pattern.strip("/").removeprefix("./")
    return selection
