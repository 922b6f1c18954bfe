"""run_command: start an allowlisted program in the workspace (off unless enabled).

This is not a sandbox: an allowed interpreter can do anything the function's
user can. That is why it is off by default (VICTOR_ENABLE_RUN_COMMAND) and
limited to VICTOR_RUN_COMMAND_ALLOWLIST. What it does guarantee: no shell,
the working directory inside the workspace, arguments that name paths outside
the workspace (absolute or with `..`) refused, a timeout that kills the whole
process group, capped output, an environment without our secrets, a child that
cannot read ours (the tools process is not dumpable while run_command is
enabled, and the child starts without capabilities, CAP_SYS_PTRACE included),
and git run with the git tools' hardened environment, refusing options that
run programs or name paths (`git_option`) and any command outside
`GIT_COMMANDS`, aliases included (`git_command`).
"""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import msgspec

from common.workspace import Workspace, WorkspaceError
from functions.tools.context import ToolContext
from functions.tools.process import run_process, scrubbed_environment
from functions.tools.registry import PathAccess, ToolDefinition, ToolError
from functions.tools.toolset.git import hardened_git

# git through run_command: the commands that work on the workspace's own files and history. Anything
# else is refused, aliases included (an alias is a configured program or command line); so are
# `config`, `submodule`, the transports, and what runs programs (bisect run, rebase --exec, difftool).
GIT_COMMANDS = frozenset(
    {
        "add", "blame", "branch", "cat-file", "checkout", "cherry-pick", "commit", "describe", "diff",
        "grep", "log", "ls-files", "ls-tree", "merge", "merge-base", "mv", "reflog", "reset", "restore",
        "rev-list", "rev-parse", "revert", "rm", "shortlog", "show", "stash", "status", "switch", "tag",
    }
)  # fmt: skip
# Options that run a program, name another repository, configuration or directory, or write a file;
# refused anywhere in argv. git accepts any unambiguous prefix of a long option, so prefixes are too.
GIT_LONG_OPTIONS = (
    "--config-env", "--config", "--git-dir", "--work-tree", "--exec-path", "--exec", "--output",
    "--output-directory", "--upload-pack", "--receive-pack", "--namespace", "--super-prefix",
    "--ext-diff", "--textconv", "--open-files-in-pager", "--template", "--separate-git-dir",
)  # fmt: skip
# Real options that happen to be prefixes of the refused ones.
GIT_SAFE_PREFIXES = frozenset({"--text"})
# -c/-C (configuration, another directory), -o (an output file), -O (a pager to run): alone,
# with the value attached, or anywhere in a cluster of short options.
GIT_SHORT_OPTIONS = frozenset("cCoO")


class RunCommandArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    argv: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=4096)]],
        msgspec.Meta(min_length=1, max_length=256, description="Program and arguments; no shell is used"),
    ]
    cwd: Annotated[str, msgspec.Meta(min_length=1, description="Working directory inside the workspace")] = (
        "."
    )
    timeout: (
        Annotated[float, msgspec.Meta(gt=0, description="Seconds before the command is killed")] | None
    ) = None


def _check_argument(ws: Workspace, cwd: str, argument: str) -> None:
    if "\0" in argument:
        raise ToolError("an argument contains a NUL byte", "invalid_argument")
    candidates = [argument]
    if "=" in argument:
        candidates.append(argument.split("=", 1)[1])
    for candidate in candidates:
        if candidate.startswith("~"):
            raise ToolError(
                f"argument {argument!r} names a home directory; use workspace paths", "outside_workspace"
            )
        if candidate.startswith("/") or ".." in candidate.split("/"):
            try:
                ws.relative(candidate)
            except WorkspaceError as exc:
                raise ToolError(f"argument {argument!r}: {exc.message}", exc.code) from None
        # An existing path that resolves outside (a symlink) is refused like an outside path.
        candidate_path = os.path.join(cwd, candidate)
        if (
            candidate
            and os.path.lexists(candidate_path)
            and not ws.contains(os.path.realpath(candidate_path))
        ):
            raise ToolError(f"argument {argument!r} leads outside the workspace", "outside_workspace")


def _refused_git_option(argument: str) -> ToolError:
    return ToolError(
        f"git option {argument!r} is refused: it runs a program, names a path or configuration, "
        "or writes a file (short options are refused in clusters too; give values separately)",
        "git_option",
    )


def check_git_arguments(arguments: list[str]) -> None:
    """Refuse options that run programs or name paths (anywhere), and any command but `GIT_COMMANDS`."""
    for argument in arguments:
        if argument.startswith("--") and len(argument) > 2:
            name = argument.split("=", 1)[0]
            if name not in GIT_SAFE_PREFIXES and any(
                option.startswith(name) for option in GIT_LONG_OPTIONS if len(name) > 3
            ):
                raise _refused_git_option(argument)
        elif argument.startswith("-") and GIT_SHORT_OPTIONS & set(argument[1:]):
            raise _refused_git_option(argument)
    command = next((argument for argument in arguments if not argument.startswith("-")), None)
    if command is None:
        raise ToolError("git needs a command, e.g. ['git', 'status']", "git_command")
    if command not in GIT_COMMANDS:
        allowed = ", ".join(sorted(GIT_COMMANDS))
        raise ToolError(
            f"git {command!r} is not run by run_command (aliases never are); allowed: {allowed}",
            "git_command",
        )


async def run_command(args: RunCommandArgs, ctx: ToolContext) -> str:
    limits = ctx.tools_settings
    if not limits.enable_run_command:
        raise ToolError(
            "run_command is disabled; set VICTOR_ENABLE_RUN_COMMAND=true to enable it", "disabled"
        )
    program = args.argv[0]
    if program not in limits.run_command_allowlist:
        allowed = ", ".join(limits.run_command_allowlist) or "none"
        raise ToolError(f"{program!r} is not allowed; allowed programs: {allowed}", "not_allowed")
    ws = ctx.workspace
    with ws.open_directory(args.cwd) as (_, rel):
        cwd = os.path.join(ws.root, rel)
    if program == "git":
        check_git_arguments(args.argv[1:])
    for argument in args.argv[1:]:
        _check_argument(ws, cwd, argument)
    if program == "git":
        executable, env = await hardened_git(ctx)
    else:
        env = scrubbed_environment(ws.root)
        found = shutil.which(program, path=env["PATH"])
        if found is None:
            raise ToolError(f"{program!r} is not installed", "not_found")
        executable = found
    timeout = min(args.timeout or limits.command_timeout, limits.command_timeout, limits.tool_timeout)
    outcome = await run_process(
        [executable, *args.argv[1:]],
        cwd=cwd,
        env=env,
        timeout=timeout,
        output_limit=limits.output_limit,
        without_capabilities=True,
    )
    if outcome.timed_out:
        raise ToolError(f"{program} did not finish in {timeout:g} s and was killed", "timeout")
    text = outcome.text
    if outcome.returncode != 0:
        raise ToolError(f"{program} exited with status {outcome.returncode}\n{text}", "exit_status")
    return text or f"{program} finished with no output"


COMMAND_TOOLS = (
    ToolDefinition(
        name="run_command",
        description="Run an allowlisted program (such as pytest or git) in the workspace, without a shell.",
        arguments=RunCommandArgs,
        run=run_command,
        read_only=False,
        idempotent=False,
        dangerous=True,
        # A command may read anything, so it waits for earlier writes in its batch; commands among
        # themselves run concurrently (ordering them would make a batch of tests sequential).
        paths=lambda args: PathAccess(reads=("*",)),
    ),
)
