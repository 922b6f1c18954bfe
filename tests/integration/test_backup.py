"""`victor backup DIR` / `victor restore DIR` against real PostgreSQL and a real LanceDB table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import lancedb
import pytest

from common.store import migrate
from eventing.dev.embedded import free_port
from tests.support.databases import scratch_database

ROOT = Path(__file__).resolve().parents[2]
NOTES = [(1, "first note"), (2, "second note"), (3, "ünïcode and 'quotes'")]
DOCS = [
    {"id": 1, "text": "def main(): pass", "vector": [0.1, 0.2, 0.3]},
    {"id": 2, "text": "class Victor: ...", "vector": [0.4, 0.5, 0.6]},
]


@pytest.fixture
async def database_url(services) -> AsyncIterator[str]:
    """A migrated database of its own, so restoring it cannot disturb other tests' data."""
    async with scratch_database(services.database_url, "victor_backup") as url:
        await migrate(url)
        yield url


def victor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the real `victor` CLI with only the given settings in its environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OTEL_"))}
    clean = {k: v for k, v in clean.items() if k not in {"DATABASE_URL", "REDIS_URL", "LANCEDB_URI"}}
    return subprocess.run(
        [sys.executable, "-m", "eventing.cli", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("victor: ")
    assert fragment in lines[0]


async def notes(url: str) -> list[tuple[int, str]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT id, body FROM notes ORDER BY id")
    finally:
        await connection.close()
    return [(row["id"], row["body"]) for row in rows]


def docs(lancedb_dir: Path) -> list[dict[str, object]]:
    table = lancedb.connect(str(lancedb_dir)).open_table("docs")
    rows = sorted(table.to_arrow().to_pylist(), key=lambda row: int(row["id"]))
    return [{"id": r["id"], "text": r["text"], "vector": [round(v, 6) for v in r["vector"]]} for r in rows]


async def test_restore_brings_back_the_exact_rows_after_changes_and_drops(database_url, tmp_path) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)")
        await connection.executemany("INSERT INTO notes (id, body) VALUES ($1, $2)", NOTES)
        await connection.execute("CREATE TABLE scratch (value text)")
        await connection.execute("INSERT INTO scratch VALUES ('kept')")
        migrations = await connection.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await connection.close()
    lancedb_dir = tmp_path / "lancedb"
    lancedb.connect(str(lancedb_dir)).create_table("docs", data=DOCS)
    env = {"DATABASE_URL": database_url, "LANCEDB_URI": str(lancedb_dir)}
    backup_dir = tmp_path / "backups" / "one"

    done = victor("backup", str(backup_dir), env=env)
    assert done.returncode == 0, done.stderr
    assert f"to {backup_dir}" in done.stdout
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["format"] == "victor-backup"
    assert manifest["postgres"]["included"] is True
    assert manifest["postgres"]["database"] == urlsplit(database_url).path.lstrip("/")
    assert (backup_dir / manifest["postgres"]["file"]).stat().st_size == manifest["postgres"]["bytes"] > 0
    assert manifest["lancedb"] == {
        "included": True,
        "directory": "lancedb",
        "tables": ["docs"],
        "reason": None,
    }
    assert "secret" not in (backup_dir / "manifest.json").read_text()

    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("DELETE FROM notes WHERE id = 1")
        await connection.execute("UPDATE notes SET body = 'changed' WHERE id = 2")
        await connection.execute("INSERT INTO notes VALUES (4, 'added after the backup')")
        await connection.execute("DROP TABLE scratch")
        await connection.execute("DELETE FROM schema_migrations")
    finally:
        await connection.close()
    table = lancedb.connect(str(lancedb_dir)).open_table("docs")
    table.delete("id = 1")
    table.add([{"id": 3, "text": "added after the backup", "vector": [0.7, 0.8, 0.9]}])
    assert await notes(database_url) == [(2, "changed"), (3, NOTES[2][1]), (4, "added after the backup")]

    done = victor("restore", str(backup_dir), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("restored PostgreSQL")

    assert await notes(database_url) == NOTES
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT value FROM scratch") == "kept"
        assert await connection.fetchval("SELECT count(*) FROM schema_migrations") == migrations
    finally:
        await connection.close()
    assert docs(lancedb_dir) == [{**doc, "vector": [round(v, 6) for v in doc["vector"]]} for doc in DOCS]
    assert sorted(p.name for p in lancedb_dir.parent.iterdir() if p.name.startswith(".lancedb")) == []


async def test_backup_with_a_password_in_the_url_keeps_it_out_of_the_manifest(database_url, tmp_path) -> None:
    user = f"backup_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"CREATE ROLE {user} LOGIN SUPERUSER PASSWORD 's3cret-pw'")
    finally:
        await connection.close()
    parts = urlsplit(database_url)
    with_password = urlunsplit(parts._replace(netloc=f"{user}:s3cret-pw@{parts.netloc.rpartition('@')[2]}"))
    backup_dir = tmp_path / "pw"

    done = victor("backup", str(backup_dir), "--skip-lancedb", env={"DATABASE_URL": with_password})

    assert done.returncode == 0, done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert "s3cret-pw" not in (backup_dir / "manifest.json").read_text()
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["lancedb"] == {
        "included": False,
        "directory": None,
        "tables": [],
        "reason": "--skip-lancedb",
    }


def write_dump_only_manifest(directory: Path) -> None:
    """A valid manifest of a backup holding a PostgreSQL dump and no LanceDB (the dump itself not written)."""
    manifest = {
        "format": "victor-backup",
        "format_version": 1,
        "created_at": "2026-01-01T00:00:00+00:00",
        "victor_version": "0.1.0",
        "python_version": "3.11.7",
        "postgres": {"included": True, "file": "postgres.dump", "database": "postgres"},
        "lancedb": {"included": False, "reason": "--skip-lancedb"},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_restore_refuses_a_directory_that_is_not_a_backup(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    done = victor("restore", str(tmp_path), env={"DATABASE_URL": "postgresql://u@localhost/db"})
    assert_one_line_error(done, f"{tmp_path} is not a Victor backup: it has no manifest.json")


def test_restore_refuses_a_missing_directory(tmp_path) -> None:
    done = victor("restore", str(tmp_path / "nowhere"), env={"DATABASE_URL": "postgresql://u@localhost/db"})
    assert_one_line_error(done, f"backup directory {tmp_path / 'nowhere'} does not exist")


def test_restore_refuses_a_manifest_that_is_not_ours(tmp_path) -> None:
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    done = victor("restore", str(tmp_path), env={"DATABASE_URL": "postgresql://u@localhost/db"})
    assert_one_line_error(done, "is not a Victor backup: manifest.json is not valid")


def test_restore_refuses_a_backup_whose_dump_is_missing(tmp_path) -> None:
    write_dump_only_manifest(tmp_path)
    done = victor("restore", str(tmp_path), env={"DATABASE_URL": "postgresql://u@localhost/db"})
    assert_one_line_error(done, "is incomplete: postgres.dump is missing")


def test_backup_needs_database_url(tmp_path) -> None:
    done = victor("backup", str(tmp_path / "b"), env={"LANCEDB_URI": str(tmp_path / "lancedb")})
    assert_one_line_error(done, "DATABASE_URL is not set")
    assert not (tmp_path / "b").exists()


def test_backup_refuses_a_directory_that_is_not_empty(services, tmp_path) -> None:
    (tmp_path / "something").write_text("x")
    done = victor("backup", str(tmp_path), env={"DATABASE_URL": services.database_url})
    assert_one_line_error(done, "already exists and is not an empty directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something"]


def test_backup_refuses_object_storage_lancedb_unless_skipped(services, tmp_path) -> None:
    env = {"DATABASE_URL": services.database_url, "LANCEDB_URI": "s3://bucket/lancedb"}
    done = victor("backup", str(tmp_path / "b"), env=env)
    assert_one_line_error(done, "LANCEDB_URI uses object storage (s3://)")
    assert not (tmp_path / "b").exists()


def test_restore_needs_database_url_when_the_backup_holds_a_dump(tmp_path) -> None:
    write_dump_only_manifest(tmp_path)
    (tmp_path / "postgres.dump").write_bytes(b"PGDMP")
    done = victor("restore", str(tmp_path), env={})
    assert_one_line_error(done, "DATABASE_URL is not set")


def test_backup_of_an_unreachable_server_fails_in_one_line_and_leaves_nothing(tmp_path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    done = victor("backup", str(tmp_path / "b"), "--skip-lancedb", env={"DATABASE_URL": url})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("victor: cannot reach PostgreSQL at DATABASE_URL")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
