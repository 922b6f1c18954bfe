"""Process supervision for `victor dev`: start, watch, restart with backoff, stop cleanly.

Each child runs in its own session (so its own process group): a terminal's
Ctrl-C reaches only the supervisor, which then stops the children in order,
and stopping a child signals its whole group, so nothing it forked survives.
On Linux a child also gets SIGTERM if the supervisor itself dies abruptly
(PR_SET_PDEATHSIG), so even `kill -9` of `victor dev` leaves no server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TextIO

import httpx

log = logging.getLogger(__name__)

State = Literal["starting", "ready", "restarting", "stopped"]
# Every `victor` command exits 2 for a bad setting or manifest: restarting cannot help.
CONFIGURATION_ERROR = 2
# Linux prctl option: deliver a signal to this process when its parent exits.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial`, multiplied by `factor` per consecutive crash, at most `cap`.

    A process that stayed up for `reset_after` seconds before crashing counts as
    healthy again, so its next restart waits only `initial`.
    """

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    reset_after: float = 30.0


class RestartPolicy:
    """The delay before each restart of one process, given how long it stayed up."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.crashes = 0

    def next_delay(self, up_for: float) -> float:
        self.crashes = 1 if up_for >= self.backoff.reset_after else self.crashes + 1
        delay = self.backoff.initial * self.backoff.factor ** (self.crashes - 1)
        return float(min(self.backoff.cap, delay))


@dataclass(frozen=True)
class ProcessSpec:
    """One supervised command; `ready_url` answers 200 once it is ready (None: ready when started)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    ready_url: str | None = None


@dataclass
class ManagedProcess:
    """What the supervisor knows about one child; read it for status tables."""

    spec: ProcessSpec
    state: State = "starting"
    pid: int | None = None
    starts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    restart_delays: list[float] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    process: asyncio.subprocess.Process | None = None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask Linux for SIGTERM when the supervisor dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Runs every `ProcessSpec` as a child process and keeps it running until `stop()`.

    Children's stdout and stderr are relayed to `output`, each line prefixed with
    the process name. A child that exits is started again after the delay its
    `RestartPolicy` gives. `stop()` sends SIGTERM to each child's process group,
    waits up to `grace` seconds, then sends SIGKILL; when it returns no child
    or grandchild is left.
    """

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        backoff: Backoff | None = None,
        grace: float = 10.0,
        output: TextIO | None = None,
        ready_poll: float = 0.2,
    ) -> None:
        self.processes = {spec.name: ManagedProcess(spec) for spec in specs}
        self.backoff = backoff or Backoff()
        self.grace = grace
        self.output = output or sys.stdout
        self.ready_poll = ready_poll
        # Off while the caller waits for the first readiness (it prints a table instead).
        self.announce_ready = False
        self._stopping = asyncio.Event()
        # Set when a child exits with status 2 (a configuration error): it is not restarted.
        self.misconfigured = asyncio.Event()
        self.failure: tuple[str, str] | None = None
        self._last_lines: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._width = max((len(spec.name) for spec in specs), default=0)

    def widen(self, name: str) -> None:
        """Align the prefixes with an extra name that will `say` lines (such as dead-letters)."""
        self._width = max(self._width, len(name))

    async def start(self) -> None:
        """Start every child; returns at once (use `wait_ready` to wait for readiness)."""
        for managed in self.processes.values():
            self._tasks.append(asyncio.create_task(self._keep_running(managed), name=managed.spec.name))

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every child is ready or `timeout` passes; True when all are ready."""
        waits = [managed.ready.wait() for managed in self.processes.values()]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop every child (SIGTERM to its group, SIGKILL after the grace period) and wait for them."""
        self._stopping.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ------------------------------------------------------------ internals

    async def _keep_running(self, managed: ManagedProcess) -> None:
        policy = RestartPolicy(self.backoff)
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            process = await self._launch(managed)
            relay = asyncio.create_task(self._relay(managed.spec.name, process))
            watch = asyncio.create_task(self._watch_ready(managed))
            exited = asyncio.create_task(process.wait())
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait((exited, stopping), return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self._terminate(managed)
            stopping.cancel()
            watch.cancel()
            code = await exited
            # A grandchild may still hold the pipe open; its output is not worth waiting for.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(relay)
            relay.cancel()
            await asyncio.gather(relay, watch, stopping, return_exceptions=True)
            _signal_group(process.pid, signal.SIGKILL)
            managed.ready.clear()
            managed.exit_codes.append(code)
            if self._stopping.is_set():
                break
            if code == CONFIGURATION_ERROR:
                self.failure = (managed.spec.name, self._last_lines.get(managed.spec.name, ""))
                self.say(
                    managed.spec.name, f"exited with status {code} (a configuration error); not restarted"
                )
                self.misconfigured.set()
                break
            delay = policy.next_delay(loop.time() - started)
            managed.restart_delays.append(delay)
            managed.state = "restarting"
            self.say(managed.spec.name, f"exited with status {code}; restarting in {delay:g}s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
        managed.state = "stopped"

    async def _launch(self, managed: ManagedProcess) -> asyncio.subprocess.Process:
        managed.state = "starting"
        process = await asyncio.create_subprocess_exec(
            *managed.spec.argv,
            env=dict(managed.spec.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        managed.process = process
        managed.pid = process.pid
        managed.starts += 1
        return process

    async def _relay(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip("\n")
            if text.strip():
                self._last_lines[name] = text
            self.say(name, text)

    async def _watch_ready(self, managed: ManagedProcess) -> None:
        url = managed.spec.ready_url
        if url is None:
            self._mark_ready(managed)
            return
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        self._mark_ready(managed)
                        return
                await asyncio.sleep(self.ready_poll)

    def _mark_ready(self, managed: ManagedProcess) -> None:
        managed.state = "ready"
        managed.ready.set()
        if managed.starts > 1 or self.announce_ready:
            self.say(managed.spec.name, f"ready after {managed.starts} start(s)")

    async def _terminate(self, managed: ManagedProcess) -> None:
        process = managed.process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.grace):
                await process.wait()
        except TimeoutError:
            self.say(managed.spec.name, f"did not stop within {self.grace:g}s; killing it")
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()

    def say(self, name: str, line: str) -> None:
        """Write one line to the output, prefixed like the children's lines."""
        self.output.write(f"{name:<{self._width}} | {line}\n")
        self.output.flush()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
