"""Running a program safely for the git and command tools.

An argv list (never a shell), a scrubbed environment (PATH, HOME set to the
workspace, LANG, plus what the caller adds; no secrets from ours), its own
process group so a timeout kills every child, and output capped while it is
read so a chatty program cannot fill memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class ProcessOutcome:
    returncode: int | None
    output: str
    truncated: bool
    timed_out: bool

    @property
    def text(self) -> str:
        """The output, with a note when it was cut at the limit."""
        return self.output + ("\n[output truncated]" if self.truncated else "")


def scrubbed_environment(home: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Only what programs need to run; nothing else from this process's environment."""
    env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "HOME": home, "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


async def run_process(
    argv: Sequence[str], *, cwd: str, env: Mapping[str, str], timeout: float, output_limit: int
) -> ProcessOutcome:
    """Run `argv` until it ends or `timeout`; stdout and stderr merged, capped at `output_limit` bytes."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    kept = bytearray()
    truncated = False

    async def drain() -> None:
        nonlocal truncated
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            room = output_limit - len(kept)
            if room > 0:
                kept.extend(chunk[:room])
            if len(chunk) > room:
                truncated = True
        await process.wait()

    timed_out = False
    try:
        await asyncio.wait_for(drain(), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        timed_out = isinstance(exc, TimeoutError)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 5)
        if not timed_out:
            raise
    return ProcessOutcome(process.returncode, kept.decode("utf-8", "replace"), truncated, timed_out)
