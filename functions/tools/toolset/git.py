"""Read-only git tools: git_status, git_diff, git_log, running the real git binary.

Git runs programs named in its configuration (filters, diff drivers, hooks,
fsmonitor, pagers, ssh), so a repository's own configuration is treated as
untrusted input. Every run is hardened:

- The repository is the workspace itself: `GIT_DIR` and `GIT_WORK_TREE` are
  set, so git never discovers a repository above it, and `.git` must be a real
  directory (no gitfile pointing elsewhere, no `commondir`, no alternates, no
  symlink inside it that leads out of it), else the tools refuse with
  `unsafe_repository`.
- No system or global configuration, no system attributes; command-line
  settings (the highest precedence) switch off hooks, fsmonitor, pagers,
  external diff, textconv, signature checks, credential helpers, every
  transport (so no lazy fetch) and submodule recursion, and pin
  `safe.directory` to the workspace.
- Every filter, diff and merge driver the repository's configuration names is
  emptied on the command line, so `.gitattributes` can name it and nothing runs; a
  configuration that includes another file is refused (it would be read from
  outside the workspace).
- Arguments are data: pathspecs are literal (`GIT_LITERAL_PATHSPECS`) and
  follow `--`, revisions match a strict pattern and never start with `-`.

The file tools never write inside `.git` (see `common.workspace`), so the
model cannot plant any of this itself.
"""

from __future__ import annotations

import asyncio
import os
import re
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


# Command-scope settings (given through GIT_CONFIG_KEY_n, which outrank the repository's own and need
# no quoting); each switches off a way to run or fetch something.
HARDENED_CONFIG = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", os.devnull),
    ("core.pager", "cat"),
    ("core.attributesFile", os.devnull),
    ("core.excludesFile", os.devnull),
    ("core.sshCommand", ""),
    ("core.askPass", ""),
    ("core.untrackedCache", "false"),
    ("diff.external", ""),
    ("log.showSignature", "false"),
    ("credential.helper", ""),
    ("protocol.allow", "never"),
    ("submodule.recurse", "false"),
    ("diff.ignoreSubmodules", "all"),
    ("status.submoduleSummary", "false"),
    # What a writing git (through run_command) could otherwise start: signing programs.
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("gpg.program", os.devnull),
    ("gpg.ssh.program", os.devnull),
    ("gpg.x509.program", os.devnull),
)
HARDENED_ENVIRONMENT = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_LITERAL_PATHSPECS": "1",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "GIT_NO_LAZY_FETCH": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_OPTIONAL_LOCKS": "0",
    # ":" is git's no-op editor: a commit through run_command never starts one.
    "GIT_EDITOR": ":",
}
# Present in a repository whose objects, refs or config live elsewhere: git cannot be told to ignore them.
FOREIGN_STORAGE = ("commondir", "objects/info/alternates", "objects/info/http-alternates")
REPOSITORY_CONFIGS = ("config", "config.worktree")
# Drivers a repository's configuration may name and `.gitattributes` may select, each a program to run.
_DRIVER_KEY = re.compile(r"(filter|diff|merge)\.(.+)\.[a-z]+", re.DOTALL)
EMPTIED_DRIVER_SETTINGS = {
    "filter": (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")),
    "diff": (("command", ""), ("textconv", "")),
    "merge": (("driver", ""),),
}


def _unsafe(message: str) -> ToolError:
    return ToolError(f"{message}; git is not run on this repository", "unsafe_repository")


def _git_dir(ws: Workspace) -> tuple[str, list[str]]:
    """The workspace's own `.git` directory and its config files, refused when any of it leads outside."""
    git_dir = os.path.join(ws.root, ".git")
    try:
        info = os.lstat(git_dir)
    except FileNotFoundError:
        raise ToolError(
            "the workspace is not a git repository (no .git directory)", "not_a_repository"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise _unsafe("the workspace's .git is not a directory (linked work trees are not supported)")
    for name in FOREIGN_STORAGE:
        if os.path.lexists(os.path.join(git_dir, name)):
            raise _unsafe(f".git/{name} makes git read another repository")
    for directory, dirnames, filenames in os.walk(git_dir):
        for name in (*dirnames, *filenames):
            entry = os.path.join(directory, name)
            if os.path.islink(entry) and not _inside(os.path.realpath(entry), git_dir):
                raise _unsafe(f"{os.path.relpath(entry, ws.root)!r} is a symlink that leads out of .git")
    configs = [os.path.join(git_dir, name) for name in REPOSITORY_CONFIGS]
    return git_dir, [config for config in configs if os.path.isfile(config)]


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + os.sep)


async def _repository_settings(
    git: str, configs: list[str], ws: Workspace, timeout: float
) -> list[tuple[str, str]]:
    """Settings that empty every filter, diff and merge driver the repository configures; refuses includes."""
    keys: set[str] = set()
    for config in configs:
        outcome = await run_process(
            [git, "config", "--file", config, "--no-includes", "--name-only", "--list"],
            cwd=ws.root,
            env=scrubbed_environment(ws.root, {**HARDENED_ENVIRONMENT, "GIT_DIR": os.path.dirname(config)}),
            timeout=timeout,
            output_limit=1 << 20,
        )
        if outcome.returncode != 0 or outcome.truncated:
            raise _unsafe(f".git/{os.path.basename(config)} cannot be read as git configuration")
        # Section and variable names come lowercased; subsection names (a driver's) keep their case.
        keys.update(line for line in outcome.output.split("\n") if line)
    if any(key.lower().startswith(("include.", "includeif.")) for key in keys):
        raise _unsafe("the repository's configuration includes other files")
    drivers = sorted({match.groups() for key in keys if (match := _DRIVER_KEY.fullmatch(key))})
    return [
        (f"{kind}.{driver}.{variable}", value)
        for kind, driver in drivers
        for variable, value in EMPTIED_DRIVER_SETTINGS[kind]
    ]


def _config_environment(settings: list[tuple[str, str]]) -> dict[str, str]:
    env = {"GIT_CONFIG_COUNT": str(len(settings))}
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


async def hardened_git(ctx: ToolContext) -> tuple[str, dict[str, str]]:
    """The git executable and the environment that runs it hardened on the workspace repository.

    Every git run by the tools (the git tools and `run_command`) uses this; raises `ToolError`
    when git is missing, the workspace has no repository, or the repository reads elsewhere.
    """
    ws = ctx.workspace
    git = shutil.which("git", path=scrubbed_environment(ws.root)["PATH"])
    if git is None:
        raise ToolError("git is not installed", "unavailable")
    git_dir, configs = await asyncio.to_thread(_git_dir, ws)
    settings = [
        *HARDENED_CONFIG,
        *await _repository_settings(git, configs, ws, ctx.tools_settings.command_timeout),
        ("safe.directory", ""),
        ("safe.directory", ws.root),
    ]
    env = scrubbed_environment(
        ws.root,
        {
            **HARDENED_ENVIRONMENT,
            **_config_environment(settings),
            "GIT_DIR": git_dir,
            "GIT_WORK_TREE": ws.root,
        },
    )
    return git, env


async def run_git(ctx: ToolContext, *args: str, path: str | None = None) -> str:
    """Run a read-only git command on the workspace repository, hardened as the module says."""
    ws = ctx.workspace
    pathspec = ["--", ws.relative(path)] if path else []
    limits = ctx.tools_settings
    git, env = await hardened_git(ctx)
    argv = [git, "--no-pager", *args, *pathspec]
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
        ctx, "status", "--porcelain=v1", "--branch", "--untracked-files=all", "--ignore-submodules=all",
        path=args.path,
    )  # fmt: skip
    return output or "nothing to report"


async def git_diff(args: GitDiffArgs, ctx: ToolContext) -> str:
    options = ["diff", "--no-ext-diff", "--no-textconv", "--no-color", "--ignore-submodules=all"]
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
