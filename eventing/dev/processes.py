"""Stopping a child process the one way the dev and test tooling does it."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM, up to `grace` seconds to exit, then SIGKILL; returns once the process is gone.

    A process that already exited is left as it is. (The `victor dev` supervisor
    stops whole process groups from asyncio instead: see `Supervisor.stop`.)
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
