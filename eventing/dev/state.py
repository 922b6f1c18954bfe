"""The URLs a running `victor dev` serves, recorded so client commands find them with no settings.

`victor dev` writes `<data dir>/dev.json` (`./.victor/dev.json` by default)
once its processes are planned and removes it when it stops. Client commands
(`victor chat`, `tools`, `index`, `search`, `send`) look for `.victor/dev.json`
in the current directory and its parents; a file left by a `victor dev` that
is no longer running is ignored.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import msgspec

STATE_FILE = "dev.json"
DATA_DIR = ".victor"


class DevState(msgspec.Struct, kw_only=True):
    """What `victor dev` serves: its process id and each name's URL (the broker's with its path)."""

    pid: int
    urls: dict[str, str]
    started_at: float


def write_state(data_dir: Path, urls: dict[str, str]) -> Path:
    """Record `urls` for this process; written whole, then renamed, so a reader never sees half."""
    path = data_dir / STATE_FILE
    partial = path.with_suffix(".tmp")
    partial.write_bytes(msgspec.json.encode(DevState(pid=os.getpid(), urls=urls, started_at=time.time())))
    partial.replace(path)
    return path


def remove_state(data_dir: Path) -> None:
    """Remove the record if this process wrote it (another `victor dev` may have written it since)."""
    path = data_dir / STATE_FILE
    with contextlib.suppress(OSError, msgspec.DecodeError):
        if msgspec.json.decode(path.read_bytes(), type=DevState).pid == os.getpid():
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def find_state(start: Path | None = None) -> DevState | None:
    """The record of a running `victor dev` in `.victor/` here or in a parent directory, if any."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        path = directory / DATA_DIR / STATE_FILE
        try:
            state = msgspec.json.decode(path.read_bytes(), type=DevState)
        except (OSError, msgspec.DecodeError):
            continue
        if _alive(state.pid):
            return state
    return None
