"""Migrations kept by their owners: collected in one global order, and old databases migrate cleanly."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from common.store import COMMON_MIGRATIONS, Store, migrate, migration_directories, migrations
from tests.support.databases import scratch_database

ROOT = Path(__file__).resolve().parents[2]
# What every database migrated before the split recorded in schema_migrations, all from common/migrations.
RECORDED_BY_THE_OLD_LAYOUT = [
    (1, "processed_events"),
    (3, "tool_calls"),
    (5, "conversations"),
    (6, "chat_steps"),
]

SCHEMA_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default
          FROM information_schema.columns WHERE table_schema = 'public'
         ORDER BY table_name, column_name""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname",
    "constraints": """
        SELECT conrelid::regclass::text AS owner, conname, pg_get_constraintdef(oid) AS definition
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY owner, conname""",
    "routines": """
        SELECT proname, pg_get_functiondef(oid) AS definition
          FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY proname""",
}


async def schema_of(url: str) -> dict[str, list[tuple[object, ...]]]:
    connection = await asyncpg.connect(url)
    try:
        return {
            part: [tuple(row.values()) for row in await connection.fetch(query)]
            for part, query in SCHEMA_QUERIES.items()
        }
    finally:
        await connection.close()


async def recorded(url: str) -> list[tuple[int, str, object]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        )
        return [(row["version"], row["name"], row["applied_at"]) for row in rows]
    finally:
        await connection.close()


def old_layout(root: Path) -> Path:
    """Every migration in one folder, as common/migrations held them all before each function kept its own."""
    folder = root / "common_migrations"
    folder.mkdir()
    for directory in migration_directories():
        for path in directory.glob("*.sql"):
            shutil.copy(path, folder / path.name)
    return folder


def test_each_owner_keeps_its_migrations_and_versions_stay_global() -> None:
    owners = {
        path.relative_to(ROOT).as_posix(): sorted(p.name for p in path.glob("*.sql"))
        for path in migration_directories()
    }
    assert owners == {
        "common/migrations": ["0001_processed_events.sql"],
        "functions/chat/migrations": ["0005_conversations.sql", "0006_chat_steps.sql"],
        "functions/tools/migrations": ["0003_tool_calls.sql"],
    }
    assert migration_directories()[0] == COMMON_MIGRATIONS
    assert [(m.version, m.name) for m in migrations()] == RECORDED_BY_THE_OLD_LAYOUT


def test_two_owners_claiming_one_version_are_refused(tmp_path: Path) -> None:
    for owner, name in (("chat", "0007_a.sql"), ("tools", "0007_b.sql")):
        (tmp_path / owner).mkdir()
        (tmp_path / owner / name).write_text("SELECT 1;")
    with pytest.raises(ValueError, match="two migrations share version 7: a, b"):
        migrations([tmp_path / "chat", tmp_path / "tools"])


async def test_a_database_migrated_by_the_old_layout_is_up_to_date_and_a_fresh_one_gets_its_schema(
    services, tmp_path: Path
) -> None:
    async with (
        scratch_database(services.database_url, "victor_migrations") as old_url,
        scratch_database(services.database_url, "victor_migrations") as fresh_url,
    ):
        assert await migrate(old_url, [old_layout(tmp_path)]) == [
            "0001_processed_events",
            "0003_tool_calls",
            "0005_conversations",
            "0006_chat_steps",
        ]
        before = await recorded(old_url)
        assert [(version, name) for version, name, _ in before] == RECORDED_BY_THE_OLD_LAYOUT

        assert await migrate(old_url) == []  # nothing re-runs
        assert await recorded(old_url) == before

        assert await migrate(fresh_url) == [
            "0001_processed_events",
            "0003_tool_calls",
            "0005_conversations",
            "0006_chat_steps",
        ]
        assert await schema_of(fresh_url) == await schema_of(old_url)
        assert await migrate(fresh_url) == []


async def test_requests_that_arrive_together_share_one_pool(services: Any) -> None:
    """The pool is made on first use: concurrent first callers get the same one, and PostgreSQL sees
    only its connections (a pool each would leak, until the server ran out of connection slots)."""
    store = Store(services.database_url, min_size=1, max_size=2)
    try:
        pools = await asyncio.gather(*(store.pool() for _ in range(20)))
        assert {id(pool) for pool in pools} == {id(pools[0])}
        assert pools[0].get_size() == 1
    finally:
        await store.close()
