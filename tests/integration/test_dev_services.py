"""`victor dev`'s embedded PostgreSQL and Redis keep their data between runs; configured ones are used."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from eventing.dev.stores import DevServices, prepare_data_dir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp root, which another pytest run may reset to 0700 while the
    # embedded PostgreSQL (the pgserver user when tests run as root) needs to reach it.
    directory = Path(tempfile.mkdtemp(prefix="victor-dev-services-"))
    try:
        yield prepare_data_dir(directory, fresh=False)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _sql(dsn: str, *statements: str) -> object:
    """Run each statement; the value of the last one's first column."""
    connection = await asyncpg.connect(dsn)
    try:
        value = None
        for statement in statements:
            value = await connection.fetchval(statement)
        return value
    finally:
        await connection.close()


def test_embedded_data_survives_a_restart_and_migrations_run_once(data_dir: Path) -> None:
    first = DevServices(data_dir, {})
    try:
        first.start()
        assert first.applied[0] == "0001_processed_events"
        assert [s.state for s in first.describe()] == ["embedded", "embedded"]
        env = first.env()
        asyncio.run(
            _sql(
                env["DATABASE_URL"],
                "CREATE TABLE dev_note (body text)",
                "INSERT INTO dev_note VALUES ('kept')",
            )
        )
        redis.Redis.from_url(env["REDIS_URL"]).set("dev:note", "kept")
    finally:
        first.stop()

    second = DevServices(data_dir, {})
    try:
        second.start()
        assert second.applied == []
        env = second.env()
        assert asyncio.run(_sql(env["DATABASE_URL"], "SELECT body FROM dev_note")) == "kept"
        assert redis.Redis.from_url(env["REDIS_URL"]).get("dev:note") == b"kept"
    finally:
        second.stop()


def test_configured_urls_are_used_and_nothing_is_started(services, tmp_path: Path) -> None:
    dev = DevServices(tmp_path, {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url})
    dev.start()
    try:
        assert dev.env() == {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url}
        assert [s.state for s in dev.describe()] == ["configured", "configured"]
        assert not (tmp_path / "postgres").exists()
        assert not (tmp_path / "redis").exists()
    finally:
        dev.stop()
