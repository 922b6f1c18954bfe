"""`victor dev` from any directory, a child with a configuration error, and a port already taken."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from tests.e2e.test_victor_dev import (
    free_port_range,
    kill_leftovers,
    postgres_processes,
    start_victor_dev,
    wait_for_line,
)

pytestmark = pytest.mark.slow


def own_env(services) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VICTOR_")}
    env.update(DATABASE_URL=services.database_url, REDIS_URL=services.redis_url)
    return env


async def test_victor_dev_runs_from_a_directory_outside_the_checkout(services, tmp_path: Path) -> None:
    elsewhere = Path(tempfile.mkdtemp(prefix="victor-dev-elsewhere-"))
    log = tmp_path / "dev.log"
    base = free_port_range(6)
    dev = await start_victor_dev(
        log, own_env(services), "--only", "broker,health", "--port-base", str(base), "--ping-interval", "0",
        cwd=elsewhere,
    )  # fmt: skip
    try:
        assert await wait_for_line(log, "victor dev is running", dev, limit=90), log.read_text()
        assert "restarting" not in log.read_text()
        assert "serving 7 trigger(s)" in log.read_text()  # the project's knative/base, found from elsewhere
    finally:
        await kill_leftovers(dev, [])
        shutil.rmtree(elsewhere, ignore_errors=True)


async def test_a_child_with_a_configuration_error_stops_victor_dev_with_its_line(
    services, tmp_path: Path
) -> None:
    log = tmp_path / "dev.log"
    env = {**own_env(services), "VICTOR_TRIGGERS_PATH": str(tmp_path / "no-such-manifests")}
    dev = await start_victor_dev(
        log, env, "--only", "broker,health", "--port-base", str(free_port_range(6)), "--ping-interval", "0",
        cwd=tmp_path,
    )  # fmt: skip
    try:
        async with asyncio.timeout(90):
            assert await dev.wait() == 2
        text = log.read_text()
        assert text.count("restarting in") == 0
        assert (
            "victor dev: broker has a configuration error (exit status 2): victor: VICTOR_TRIGGERS_PATH"
            in text
        )
    finally:
        await kill_leftovers(dev, postgres_processes(tmp_path / ".victor"))


async def test_a_port_in_use_is_reported_before_anything_starts(services, tmp_path: Path) -> None:
    base = free_port_range(6)
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", base + 4))
    holder.listen()
    log = tmp_path / "dev.log"
    try:
        dev = await start_victor_dev(
            log, own_env(services), "--only", "health", "--port-base", str(base), cwd=tmp_path
        )
        async with asyncio.timeout(60):
            assert await dev.wait() == 2
    finally:
        holder.close()
    assert log.read_text() == (
        f"victor: port {base + 4} (health) is already in use; stop what holds it or pass --port-base\n"
    )
