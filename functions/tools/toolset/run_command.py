"""run_command: start an allowlisted program in the workspace (off unless enabled).

This is not a sandbox: an allowed interpreter can do anything the function's
user can. That is why it is off by default (VICTOR_ENABLE_RUN_COMMAND) and
limited to VICTOR_RUN_COMMAND_ALLOWLIST. What it does guarantee: no shell,
the working directory inside the workspace, arguments that name paths outside
the workspace (absolute or with `..`) refused, a timeout that kills the whole
process group, capped output, and an environment without our secrets.
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
    for argument in args.argv[1:]:
        _check_argument(ws, cwd, argument)
    env = scrubbed_environment(ws.root)
    executable = shutil.which(program, path=env["PATH"])
    if executable is None:
        raise ToolError(f"{program!r} is not installed", "not_found")
    timeout = min(args.timeout or limits.command_timeout, limits.command_timeout, limits.tool_timeout)
    outcome = await run_process(
        [executable, *args.argv[1:]], cwd=cwd, env=env, timeout=timeout, output_limit=limits.output_limit
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
