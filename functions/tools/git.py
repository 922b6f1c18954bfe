"""Read-only git tools: git_status, git_diff, git_log, running the real git binary.

The repository must be the workspace itself (its `.git` a real directory
inside it), so git never discovers a repository above the workspace. Config
that could run programs (fsmonitor, external diff, textconv, pager) is turned
off on the command line, and optional index locks are disabled so that even
`git status` writes nothing.
"""

from __future__ import annotations

import os
import shutil
import stat
from typing import Annotated

import msgspec

from common.workspace import Workspace
from functions.tools.context import ToolContext
from functions.tools.process import run_process, scrubbed_environment
from functions.tools.registry import PathAccess, ToolDefinition, ToolError

OptionalPath = (
    Annotated[str, msgspec.Meta(min_length=1, description="Limit to this path inside the workspace")] | None
)
Revision = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_./~^@{}-]{1,200}$", description="A revision")]


class GitStatusArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: OptionalPath = None


class GitDiffArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: OptionalPath = None
    staged: Annotated[
        bool, msgspec.Meta(description="Diff the index against HEAD instead of the work tree")
    ] = False
    revision: Revision | None = None


class GitLogArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: OptionalPath = None
    max_count: Annotated[int, msgspec.Meta(ge=1, le=500)] = 20


def _git_dir(ws: Workspace) -> str:
    git_dir = os.path.join(ws.root, ".git")
    try:
        info = os.lstat(git_dir)
    except FileNotFoundError:
        raise ToolError(
            "the workspace is not a git repository (no .git directory)", "not_a_repository"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise ToolError("the workspace's .git is not a directory; linked work trees are not supported")
    return git_dir


async def run_git(ctx: ToolContext, *args: str, path: str | None = None) -> str:
    ws = ctx.workspace
    git = shutil.which("git")
    if git is None:
        raise ToolError("git is not installed", "unavailable")
    pathspec = ["--", ws.relative(path)] if path else []
    argv = [
        git,
        "--no-pager",
        "-c", "core.fsmonitor=false",
        "-c", "core.pager=cat",
        "-c", f"safe.directory={ws.root}",
        "-c", "diff.external=",
        *args,
        *pathspec,
    ]  # fmt: skip
    env = scrubbed_environment(
        ws.root,
        {
            "GIT_DIR": _git_dir(ws),
            "GIT_WORK_TREE": ws.root,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_OPTIONAL_LOCKS": "0",
        },
    )
    limits = ctx.tools_settings
    outcome = await run_process(
        argv, cwd=ws.root, env=env, timeout=limits.command_timeout, output_limit=limits.output_limit
    )
    if outcome.timed_out:
        raise ToolError(f"git {args[0]} did not finish in {limits.command_timeout:g} s", "timeout")
    if outcome.returncode != 0:
        raise ToolError(f"git {args[0]} failed (exit {outcome.returncode}): {outcome.output.strip()[:2000]}")
    return outcome.text


async def git_status(args: GitStatusArgs, ctx: ToolContext) -> str:
    output = await run_git(
        ctx, "status", "--porcelain=v1", "--branch", "--untracked-files=all", path=args.path
    )
    return output or "nothing to report"


async def git_diff(args: GitDiffArgs, ctx: ToolContext) -> str:
    options = ["diff", "--no-ext-diff", "--no-textconv", "--no-color"]
    if args.staged:
        options.append("--staged")
    if args.revision:
        if args.revision.startswith("-"):
            raise ToolError("revision must not start with '-'", "invalid_revision")
        options.append(args.revision)
    output = await run_git(ctx, *options, path=args.path)
    return output or "no differences"


async def git_log(args: GitLogArgs, ctx: ToolContext) -> str:
    output = await run_git(
        ctx, "log", f"--max-count={args.max_count}", "--no-color", "--format=%h %ad %an %s", "--date=short",
        path=args.path,
    )  # fmt: skip
    return output or "no commits"


def _repository(args: GitStatusArgs | GitDiffArgs | GitLogArgs) -> PathAccess:
    return PathAccess(reads=(args.path or ".",))


GIT_TOOLS = (
    ToolDefinition(
        name="git_status",
        description="Show the git status of the workspace: branch, staged, modified and untracked files.",
        arguments=GitStatusArgs,
        run=git_status,
        paths=_repository,
    ),
    ToolDefinition(
        name="git_diff",
        description="Show git changes in the workspace as a unified diff (work tree, staged, or a revision).",
        arguments=GitDiffArgs,
        run=git_diff,
        paths=_repository,
    ),
    ToolDefinition(
        name="git_log",
        description="Show recent git commits in the workspace: hash, date, author and subject.",
        arguments=GitLogArgs,
        run=git_log,
        paths=_repository,
    ),
)
