"""File tools: read_file, write_file, edit_file, list_directory, glob, grep.

All file access goes through `Workspace`, so every path is confined; tree
walks use `os.fwalk` over verified directory descriptors and never follow
symlinks, and files found by a walk are opened with `O_NOFOLLOW` relative to
their directory's descriptor.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from common.workspace import (
    GitIgnore,
    Workspace,
    WorkspaceError,
    is_binary,
    is_utf8_name,
    read_all,
    shown_name,
)
from functions.tools.context import ToolContext
from functions.tools.registry import PathAccess, Rendered, Runner, StateOf, ToolDefinition, ToolError

if TYPE_CHECKING:
    import regex

# Directories no code search wants to descend into.
SKIPPED_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".ruff_cache"})
MAX_WALKED_FILES = 20_000

Path = Annotated[str, msgspec.Meta(min_length=1, max_length=8192, description="A path inside the workspace")]


class ReadFileArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: Path
    offset: Annotated[int, msgspec.Meta(ge=1, description="First line to return (1-based)")] = 1
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000, description="Most lines to return")] = 2000
    line_numbers: Annotated[bool, msgspec.Meta(description="Prefix each line with its number")] = True


class WriteFileArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: Path
    content: str


class EditFileArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: Path
    old_text: Annotated[str, msgspec.Meta(min_length=1, description="Exact text to replace; must occur once")]
    new_text: str


class ListDirectoryArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: Path = "."
    include_hidden: bool = False
    include_ignored: Annotated[
        bool,
        msgspec.Meta(description="Also list what .gitignore excludes (left out by default, as git does)"),
    ] = False


class GlobArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pattern: Annotated[str, msgspec.Meta(min_length=1, max_length=1024, description="e.g. **/*.py")]
    path: Path = "."
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500


class GrepArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pattern: Annotated[
        str, msgspec.Meta(min_length=1, max_length=1024, description="Python regular expression")
    ]
    path: Path = "."
    glob: (
        Annotated[str, msgspec.Meta(min_length=1, description="Only files matching this glob, e.g. *.py")]
        | None
    ) = None
    context: Annotated[int, msgspec.Meta(ge=0, le=20, description="Lines of context around each match")] = 0
    ignore_case: bool = False
    max_results: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 200


# ---------------------------------------------------------------- structured results (MCP)


class DirectoryEntry(msgspec.Struct, kw_only=True):
    # A name that is not UTF-8 is shown with `\\xNN` escapes and the kind "not_utf8": no tool opens it.
    name: str
    kind: Literal["file", "directory", "symlink", "special", "not_utf8"]
    size: int | None = None


class DirectoryListing(msgspec.Struct, kw_only=True):
    """list_directory's result as data."""

    path: str
    entries: list[DirectoryEntry]
    truncated: bool = False


class GlobMatches(msgspec.Struct, kw_only=True):
    """glob's result as data: workspace-relative paths; `stopped` when the limit was reached."""

    pattern: str
    path: str
    paths: list[str]
    stopped: bool = False
    truncated: bool = False
    # Files and directories left out because their names are not UTF-8 (shown with \\xNN escapes).
    not_utf8: list[str] = msgspec.field(default_factory=list)


class GrepMatch(msgspec.Struct, kw_only=True):
    path: str
    line: int
    text: str


class GrepMatches(msgspec.Struct, kw_only=True):
    """grep's result as data: the matching lines (context lines are in the text only)."""

    pattern: str
    matches: list[GrepMatch]
    files: int
    stopped: bool = False
    truncated: bool = False
    # Files and directories left out because their names are not UTF-8 (shown with \\xNN escapes).
    not_utf8: list[str] = msgspec.field(default_factory=list)


def rendered(ctx: ToolContext, text: str, data: msgspec.Struct) -> Rendered:
    """The text cut to the output limit, and the data marked `truncated` when the text was cut."""
    capped = ctx.cap(text)
    if capped != text:
        data = msgspec.structs.replace(data, truncated=True)  # type: ignore[type-var]
    return Rendered(capped, data)


# ---------------------------------------------------------------- helpers


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex over '/'-separated relative paths: `**` spans directories, `*` does not."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as exc:  # a class such as [z-a]
        raise ToolError(f"{pattern!r} is not a valid glob: {exc}", "invalid_pattern") from None


def file_filter(pattern: str | None) -> Callable[[str], bool]:
    """A predicate over relative paths; a pattern without '/' matches the name anywhere (grep --include)."""
    if pattern is None:
        return lambda _relative: True
    regex = glob_regex(pattern.lstrip("/"))
    if "/" in pattern:
        return lambda relative: bool(regex.match(relative))
    return lambda relative: bool(regex.match(relative.rsplit("/", 1)[-1]))


def walk_files(
    ws: Workspace, path: str, not_utf8: list[str] | None = None
) -> Iterator[tuple[str, str, int, os.stat_result]]:
    """(relative path, name, directory fd, lstat) of regular files under `path`, never through symlinks,
    leaving out what `.gitignore` excludes (as the indexer does) and `SKIPPED_DIRS`.

    `path` may also name one regular file, which is then the only one. Files and directories whose
    names are not UTF-8 are left out too, and added to `not_utf8` (as `shown_name` shows them).
    """
    rel = ws.relative(path)
    if rel != ".":
        parent, _, name = rel.rpartition("/")
        with ws.open_directory(parent or ".") as (parent_fd, _):
            try:
                info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise WorkspaceError("not_found", f"{rel!r} does not exist") from None
            if stat.S_ISREG(info.st_mode):
                # Named on its own, a file the workspace will not read is refused, not silently skipped.
                if (refused := ws.refusal(rel, name, info)) is not None:
                    raise refused
                yield rel, name, parent_fd, info
                return
    ignore = GitIgnore(ws)
    with ws.open_directory(path) as (fd, rel):
        count = 0
        for dirpath, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            here = PurePosixPath(rel, dirpath) if rel != "." else PurePosixPath(dirpath)
            for name in [name for name in (*dirnames, *filenames) if not is_utf8_name(name)]:
                if not_utf8 is not None:
                    not_utf8.append(shown_name(str(here / name)) + ("/" if name in dirnames else ""))
            dirnames[:] = sorted(
                name
                for name in dirnames
                if is_utf8_name(name)
                and name not in SKIPPED_DIRS
                and not ignore.ignored(here / name, is_dir=True)
            )
            for name in sorted(filter(is_utf8_name, filenames)):
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode) or ignore.ignored(here / name):
                    continue
                inner = os.path.normpath(os.path.join(dirpath, name))
                relative = inner if rel == "." else f"{rel}/{inner}"
                yield relative, name, dir_fd, info
                count += 1
                if count >= MAX_WALKED_FILES:
                    return


def not_utf8_note(names: list[str]) -> str:
    """The line a walk's text ends with when it left out names that are not UTF-8; empty when none."""
    if not names:
        return ""
    return f"\n[left out {len(names)} not UTF-8 (no tool can open them): {', '.join(names)}]"


def tree_state(ws: Workspace, path: str) -> str:
    """A fingerprint of every file under `path` (names, sizes, mtimes)."""
    digest = hashlib.sha256()
    for relative, _, _, info in walk_files(ws, path):
        digest.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_walked(ws: Workspace, dir_fd: int, name: str) -> bytes | None:
    """The bytes of a file a walk found; None when it is not a regular file or the workspace refuses it
    (a secret file or a hard link: searches skip those silently, as they skip binary files)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or ws.refusal(name, name, info) is not None:
            return None
        return read_all(fd, ws.max_file_size)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- tools


def _read_file(args: ReadFileArgs, ctx: ToolContext) -> str:
    content = ctx.workspace.read(args.path)
    if content.text is None:
        return f"{content.path} is a binary file ({content.size} bytes); its content is not shown"
    lines = content.text.splitlines()
    chosen = lines[args.offset - 1 : args.offset - 1 + args.limit]
    if not chosen and args.offset > 1 and args.offset > len(lines):
        raise ToolError(f"offset {args.offset} is past the end of {content.path} ({len(lines)} lines)")
    if args.line_numbers:
        width = len(str(args.offset + len(chosen)))
        body = "\n".join(f"{number:>{width}}\t{line}" for number, line in enumerate(chosen, args.offset))
    else:
        body = "\n".join(chosen)
    remaining = len(lines) - (args.offset - 1 + len(chosen))
    if remaining > 0:
        body += f"\n[{remaining} more lines; read on with offset={args.offset + len(chosen)}]"
    return body


async def read_file(args: ReadFileArgs, ctx: ToolContext) -> str:
    return ctx.cap(await asyncio.to_thread(_read_file, args, ctx))


async def write_file(args: WriteFileArgs, ctx: ToolContext) -> str:
    data = args.content.encode("utf-8")
    rel = await asyncio.to_thread(ctx.workspace.write, args.path, data)
    return f"wrote {len(data)} bytes to {rel}"


def _edit_file(args: EditFileArgs, ctx: ToolContext) -> str:
    content = ctx.workspace.read(args.path)
    if content.text is None:
        raise ToolError(f"{content.path} is a binary file; edit_file only edits text")
    count = content.text.count(args.old_text)
    if count == 0:
        raise ToolError(f"old_text was not found in {content.path}; read the file and copy the text exactly")
    if count > 1:
        raise ToolError(
            f"old_text occurs {count} times in {content.path}; include more context to make it unique"
        )
    updated = content.text.replace(args.old_text, args.new_text, 1)
    ctx.workspace.write(content.path, updated.encode("utf-8"))
    line = content.text[: content.text.index(args.old_text)].count("\n") + 1
    return f"edited {content.path} at line {line}"


async def edit_file(args: EditFileArgs, ctx: ToolContext) -> str:
    return await asyncio.to_thread(_edit_file, args, ctx)


def _list_directory(args: ListDirectoryArgs, ctx: ToolContext) -> tuple[str, DirectoryListing]:
    lines: list[str] = []
    found: list[DirectoryEntry] = []
    ignore = GitIgnore(ctx.workspace)
    with ctx.workspace.open_directory(args.path) as (fd, rel), os.scandir(fd) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") and not args.include_hidden:
                continue
            if not is_utf8_name(entry.name):
                lines.append(f"{shown_name(entry.name)}\t(name is not UTF-8; no tool can open it)")
                found.append(DirectoryEntry(name=shown_name(entry.name), kind="not_utf8"))
                continue
            info = entry.stat(follow_symlinks=False)
            if not args.include_ignored:
                inside = PurePosixPath(rel, entry.name) if rel != "." else PurePosixPath(entry.name)
                if ignore.ignored(inside, is_dir=stat.S_ISDIR(info.st_mode)):
                    continue
            if stat.S_ISLNK(info.st_mode):
                lines.append(f"{entry.name} -> (symlink)")
                found.append(DirectoryEntry(name=entry.name, kind="symlink"))
            elif stat.S_ISDIR(info.st_mode):
                lines.append(f"{entry.name}/")
                found.append(DirectoryEntry(name=entry.name, kind="directory"))
            elif stat.S_ISREG(info.st_mode):
                lines.append(f"{entry.name}\t{info.st_size} bytes")
                found.append(DirectoryEntry(name=entry.name, kind="file", size=info.st_size))
            else:
                lines.append(f"{entry.name}\t(special file)")
                found.append(DirectoryEntry(name=entry.name, kind="special"))
    header = f"{rel}: {len(lines)} entries"
    return "\n".join([header, *lines]), DirectoryListing(path=rel, entries=found)


async def list_directory(args: ListDirectoryArgs, ctx: ToolContext) -> Rendered:
    return rendered(ctx, *await asyncio.to_thread(_list_directory, args, ctx))


def _glob(args: GlobArgs, ctx: ToolContext) -> tuple[str, GlobMatches]:
    regex = glob_regex(args.pattern.lstrip("/"))
    found: list[str] = []
    not_utf8: list[str] = []
    base = ctx.workspace.relative(args.path)
    for relative, _, _, _ in walk_files(ctx.workspace, args.path, not_utf8):
        inner = relative if base == "." else relative[len(base) + 1 :]
        if regex.match(inner):
            found.append(relative)
            if len(found) >= args.limit:
                break
    stopped = len(found) >= args.limit
    data = GlobMatches(pattern=args.pattern, path=base, paths=found, stopped=stopped, not_utf8=not_utf8)
    note = not_utf8_note(not_utf8)
    if not found:
        return f"no files match {args.pattern!r} under {base}{note}", data
    suffix = f"\n[stopped at {args.limit} matches]" if stopped else ""
    return "\n".join(found) + suffix + note, data


async def glob(args: GlobArgs, ctx: ToolContext) -> Rendered:
    return rendered(ctx, *await asyncio.to_thread(_glob, args, ctx))


def _grep(args: GrepArgs, ctx: ToolContext, deadline: float) -> tuple[str, GrepMatches]:
    # The `regex` module (re's syntax) releases the GIL while it matches and takes a timeout, so
    # a pattern that backtracks for ever neither stops the event loop nor outlives the tool timeout.
    # Imported with the first grep, not at start (about 9 ms of the tools function's start).
    import regex

    try:
        pattern = regex.compile(args.pattern, regex.V0 | (regex.IGNORECASE if args.ignore_case else 0))
    except (regex.error, ValueError) as exc:
        raise ToolError(f"pattern is not a valid regular expression: {exc}", "invalid_pattern") from None
    wanted = file_filter(args.glob)
    out: list[str] = []
    matches = 0
    files_matched = 0
    found = GrepMatches(pattern=args.pattern, matches=[], files=0)
    for relative, name, dir_fd, info in walk_files(ctx.workspace, args.path, found.not_utf8):
        if not wanted(relative):
            continue
        if info.st_size > ctx.workspace.max_file_size:
            continue
        data = read_walked(ctx.workspace, dir_fd, name)
        if data is None or is_binary(data):
            continue
        lines = data.decode("utf-8").splitlines()
        hits = _matching_lines(pattern, lines, deadline, relative)
        if not hits:
            continue
        files_matched += 1
        shown: set[int] = set()
        for index in hits:
            if matches >= args.max_results:
                break
            matches += 1
            found.matches.append(GrepMatch(path=relative, line=index + 1, text=lines[index]))
            for around in range(max(0, index - args.context), min(len(lines), index + args.context + 1)):
                if around in shown:
                    continue
                shown.add(around)
                marker = ":" if around == index or around in hits else "-"
                out.append(f"{relative}{marker}{around + 1}{marker}{lines[around]}")
            if args.context:
                out.append("--")
        if matches >= args.max_results:
            out.append(f"[stopped at {args.max_results} matches]")
            found.stopped = True
            break
    found.files = files_matched
    note = not_utf8_note(found.not_utf8)
    if not out:
        return f"no matches for {args.pattern!r}{note}", found
    return "\n".join(out) + note, found


def _matching_lines(
    pattern: regex.Pattern[str], lines: list[str], deadline: float, relative: str
) -> list[int]:
    """Indexes of the lines `pattern` matches; a ToolError once the deadline passes, mid-match too."""
    hits = []
    for index, line in enumerate(lines):
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if pattern.search(line, timeout=remaining):
                hits.append(index)
        except TimeoutError:
            raise ToolError(
                f"grep stopped at {relative}:{index + 1}: the pattern took longer than the tool timeout "
                "(nested repetition such as (a+)+ can backtrack for ever; simplify the pattern)",
                "timeout",
            ) from None
    return hits


async def grep(args: GrepArgs, ctx: ToolContext) -> Rendered:
    # The thread stops by itself at the deadline, just before the executor's own timeout.
    deadline = time.monotonic() + ctx.tools_settings.tool_timeout * 0.95
    return rendered(ctx, *await asyncio.to_thread(_grep, args, ctx, deadline))


# ---------------------------------------------------------------- cache state


async def file_state(args: ReadFileArgs | EditFileArgs, ctx: ToolContext) -> str | None:
    try:
        state = await asyncio.to_thread(ctx.workspace.state, args.path)
    except WorkspaceError:
        return None  # errors are not cached
    return f"{state.size}:{state.mtime_ns}:{state.inode}"


async def directory_state(args: ListDirectoryArgs | GlobArgs | GrepArgs, ctx: ToolContext) -> str | None:
    try:
        return await asyncio.to_thread(tree_state, ctx.workspace, args.path)
    except WorkspaceError:
        return None


def _path_tool(
    name: str,
    description: str,
    arguments: type[msgspec.Struct],
    run: Runner,
    *,
    state: StateOf | None = None,
    writes: bool = False,
    idempotent: bool = True,
    output: type[msgspec.Struct] | None = None,
) -> ToolDefinition:
    """A tool over its `path` argument: a read (cached by `state` when given) or a write of that path."""
    return ToolDefinition(
        name=name,
        description=description,
        arguments=arguments,
        run=run,
        read_only=not writes,
        idempotent=idempotent,
        cacheable=state is not None,
        output=output,
        # A write is ordered after earlier calls of its batch that touch the path.
        paths=lambda args: PathAccess(reads=(args.path,), writes=(args.path,) if writes else ()),
        state=state,
    )


FILE_TOOLS = (
    _path_tool(
        "read_file",
        "Read a text file in the workspace with line numbers; offset and limit page long files.",
        ReadFileArgs,
        read_file,
        state=file_state,
    ),
    _path_tool(
        "write_file",
        "Create or overwrite a workspace file with the given content (parents are created).",
        WriteFileArgs,
        write_file,
        writes=True,
    ),
    _path_tool(
        "edit_file",
        "Replace one exact, unique occurrence of old_text with new_text in a workspace file.",
        EditFileArgs,
        edit_file,
        writes=True,
        idempotent=False,
    ),
    _path_tool(
        "list_directory",
        "List a workspace directory: files with sizes, subdirectories and links.",
        ListDirectoryArgs,
        list_directory,
        state=directory_state,
        output=DirectoryListing,
    ),
    _path_tool(
        "glob",
        "Find files in the workspace whose paths match a glob pattern such as **/*.py.",
        GlobArgs,
        glob,
        state=directory_state,
        output=GlobMatches,
    ),
    _path_tool(
        "grep",
        "Search file contents in the workspace for a regular expression, with context lines.",
        GrepArgs,
        grep,
        state=directory_state,
        output=GrepMatches,
    ),
)
