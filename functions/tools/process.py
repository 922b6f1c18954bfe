"""Running a program safely for the git and command tools.

An argv list (never a shell), a scrubbed environment (PATH, HOME set to the
workspace, LANG, plus what the caller adds; no secrets from ours), its own
process group so a timeout kills every child, and output capped while it is
read so a chatty program cannot fill memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# prctl(2) options (linux/prctl.h).
_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4


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


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return function


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as file:
            return int(file.read())
    except (OSError, ValueError):
        return 63


def hide_environment_from_children() -> int | None:
    """Make this process non-dumpable; returns the previous state for `restore_dumpable` (None: not Linux).

    A non-dumpable process's /proc/<pid>/environ, mem and maps can be read only with
    CAP_SYS_PTRACE, which no child started `without_capabilities` has, even as the same user.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    previous = prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)
    prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    return previous


def restore_dumpable(previous: int | None) -> None:
    """Undo `hide_environment_from_children`."""
    prctl = _prctl()
    if prctl is not None and previous is not None and previous >= 0:
        prctl(_PR_SET_DUMPABLE, previous, 0, 0, 0)


def _capability_dropper() -> Callable[[], None] | None:
    """A pre-exec step that empties the child's capability bounding set and ambient set.

    The program then runs without any capability even when this process runs as root, so
    it cannot read a non-dumpable parent. Without CAP_SETPCAP (an ordinary user) the drop
    fails harmlessly: such a child gains no capability at exec anyway.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    capabilities = range(_last_capability() + 1)

    def drop() -> None:  # runs in the forked child: only prctl calls, nothing that allocates much
        for capability in capabilities:
            prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)
        prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)

    return drop


async def run_process(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    timeout: float,
    output_limit: int,
    without_capabilities: bool = False,
) -> ProcessOutcome:
    """Run `argv` until it ends or `timeout`; stdout and stderr merged, capped at `output_limit` bytes.

    `without_capabilities`: the program starts with an empty capability bounding set.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_capability_dropper() if without_capabilities else None,
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
