"""Test support for the foundation: functions served as real subprocesses, and small fake peers.

`serving(argv, env)` runs `victor serve ...` or `functions-framework ...` as a
child process on a free port, waits (bounded) until /health/live answers, and
stops it afterwards. `FakeFunction` is a peer function's /health/ready served
in-process that records the headers it was called with and can be held open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar, Request, Response, get

from common.settings import Settings
from eventing.dev.embedded import free_port
from eventing.dev.processes import stop_process

# The type of the `make_settings` fixture in tests/conftest.py.
MakeSettings = Callable[..., Settings]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# Variables of the developer's shell that would change what the function reads.
_OWN_PREFIXES = ("VICTOR_", "REDIS_URL", "DATABASE_URL", "LOG_LEVEL", "OTEL_", "K_SINK", "PORT", "FUNCTION_")


def unique(prefix: str) -> str:
    """A CloudEvent id no earlier run used (the idempotency record may outlive a test run)."""
    return f"{prefix}-{uuid.uuid4()}"


def clean_env(**overrides: str) -> dict[str, str]:
    """The process environment without any Victor setting, plus `overrides`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_OWN_PREFIXES)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(overrides)
    return env


def victor_serve(function: str = "health") -> list[str]:
    return [sys.executable, "-m", "eventing.cli", "serve", function, "--host", "127.0.0.1"]


def functions_framework(source: str = "functions/health/main.py", target: str = "handle") -> list[str]:
    return [str(VENV_BIN / "functions-framework"), "--asgi", "--target", target, "--source", source]


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextlib.asynccontextmanager
async def serving(
    argv: list[str], env: Mapping[str, str], log: Path, port: int | None = None
) -> AsyncIterator[Served]:
    """Run a server process on `port` (else a free one) until the block ends; yields once /health/live
    is 200."""
    port = port or free_port()
    if "functions-framework" in argv[0]:
        argv = [*argv, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, cwd=ROOT, env={**env, "PORT": str(port)}, stdout=sink, stderr=subprocess.STDOUT
        )
    served = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
            for _ in range(300):  # up to about 30 s on a busy machine
                if process.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited with {process.returncode}:\n{served.output()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health/live")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"{argv[0]} did not answer /health/live:\n{served.output()}")
        yield served
    finally:
        stop_process(process, grace=15)


@dataclass
class FakeFunction:
    """Another function's /health/ready: records request headers; `hold` keeps requests waiting."""

    status: int = 200
    seen: list[dict[str, str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    hold: bool = False

    def app(self) -> Litestar:
        fake = self

        @get("/health/ready")
        async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
            fake.seen.append(dict(request.headers))
            fake.arrived.set()
            if fake.hold:
                await asyncio.wait_for(fake.release.wait(), 30)
            return Response(
                {"status": "ready" if fake.status == 200 else "not ready"}, status_code=fake.status
            )

        return Litestar([ready])
