"""Settings only the tools function reads, parsed with the shared `EnvReader`.

| variable | default | meaning |
| --- | --- | --- |
| VICTOR_ENABLE_RUN_COMMAND | false | expose `run_command` at all |
| VICTOR_RUN_COMMAND_ALLOWLIST | git,ls,cat,python3,pytest,sleep,echo | programs `run_command` may start |
| VICTOR_TOOL_TIMEOUT | 30 | seconds one tool call may take |
| VICTOR_COMMAND_TIMEOUT | 20 | seconds one `run_command` may take (capped by the tool timeout) |
| VICTOR_TOOL_OUTPUT_LIMIT | 64KB | the most characters a tool returns |
| VICTOR_MAX_FILE_SIZE | 2MB | the largest file the file tools read or write |
| VICTOR_CODE_SEARCH_COLLECTION | workspace | the embeddings collection `code_search` indexes and searches |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from common.settings import EnvReader, SettingsError

DEFAULT_ALLOWLIST = ("git", "ls", "cat", "python3", "pytest", "sleep", "echo")


@dataclass(frozen=True)
class ToolsSettings:
    enable_run_command: bool = False
    run_command_allowlist: tuple[str, ...] = DEFAULT_ALLOWLIST
    tool_timeout: float = 30.0
    command_timeout: float = 20.0
    output_limit: int = 64 * 1024
    max_file_size: int = 2 * 1024 * 1024
    code_search_collection: str = "workspace"


def load_tools_settings(environ: Mapping[str, str] | None = None) -> ToolsSettings:
    """Parse the tools function's variables; raise `SettingsError` naming the first bad one."""
    env = EnvReader(os.environ if environ is None else environ)
    raw_allowlist = env.string("VICTOR_RUN_COMMAND_ALLOWLIST", ",".join(DEFAULT_ALLOWLIST))
    allowlist = tuple(name.strip() for name in raw_allowlist.split(",") if name.strip())
    for name in allowlist:
        if "/" in name or name in (".", ".."):
            raise SettingsError(
                "VICTOR_RUN_COMMAND_ALLOWLIST", f"expected program names without '/', got {name!r}"
            )
    return ToolsSettings(
        enable_run_command=env.boolean("VICTOR_ENABLE_RUN_COMMAND", False),
        run_command_allowlist=allowlist,
        tool_timeout=env.number("VICTOR_TOOL_TIMEOUT", 30.0, minimum=0.1),
        command_timeout=env.number("VICTOR_COMMAND_TIMEOUT", 20.0, minimum=0.1),
        output_limit=env.size("VICTOR_TOOL_OUTPUT_LIMIT", 64 * 1024),
        max_file_size=env.size("VICTOR_MAX_FILE_SIZE", 2 * 1024 * 1024),
        # The embeddings function checks the name; a bad one makes code_search answer its 422 detail.
        code_search_collection=env.string("VICTOR_CODE_SEARCH_COLLECTION", "workspace"),
    )
