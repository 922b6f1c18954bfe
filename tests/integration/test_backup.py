"""`victor backup DIR` / `victor restore DIR` against real PostgreSQL and a real LanceDB table.

Also against the stores of a `victor dev` data directory (its embedded PostgreSQL and
`.victor/lancedb`), and against every kind of damage a backup can suffer: each one is
refused in one line and leaves the stores exactly as they were.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import lancedb
import pytest

from common.store import migrate
from eventing.dev.embedded import free_port
from eventing.dev.stores import DevServices, dev_lancedb_uri, prepare_data_dir
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


def victor(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real `victor` CLI in `cwd` with only the given settings in its environment.

    `cwd` matters: without DATABASE_URL / LANCEDB_URI the CLI looks for victor dev's `.victor` there.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OTEL_"))}
    clean = {k: v for k, v in clean.items() if k not in {"DATABASE_URL", "REDIS_URL", "LANCEDB_URI"}}
    return subprocess.run(
        [sys.executable, "-m", "eventing.cli", *args],
        cwd=cwd,
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

    done = victor("backup", str(backup_dir), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"to {backup_dir}" in done.stdout
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["format"] == "victor-backup"
    assert manifest["format_version"] == 2
    assert manifest["files"] == {
        path.relative_to(backup_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(backup_dir.rglob("*"))
        if path.is_file() and path.name != "manifest.json"
    }
    assert "postgres.dump" in manifest["files"]
    assert any(name.startswith("lancedb/docs.lance/") for name in manifest["files"])
    assert manifest["postgres"]["included"] is True
    assert manifest["postgres"]["embedded"] is False
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

    done = victor("restore", str(backup_dir), env=env, cwd=tmp_path)
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

    done = victor(
        "backup", str(backup_dir), "--skip-lancedb", env={"DATABASE_URL": with_password}, cwd=tmp_path
    )

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


NOT_A_DATABASE = {"DATABASE_URL": "postgresql://u@localhost/db"}


def test_restore_refuses_a_directory_that_is_not_a_backup(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    done = victor("restore", str(tmp_path), env=NOT_A_DATABASE, cwd=tmp_path)
    assert_one_line_error(done, f"{tmp_path} is not a Victor backup: it has no manifest.json")


def test_restore_refuses_a_missing_directory(tmp_path) -> None:
    done = victor("restore", str(tmp_path / "nowhere"), env=NOT_A_DATABASE, cwd=tmp_path)
    assert_one_line_error(done, f"backup directory {tmp_path / 'nowhere'} does not exist")


def test_restore_refuses_a_manifest_that_is_not_ours(tmp_path) -> None:
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    done = victor("restore", str(tmp_path), env=NOT_A_DATABASE, cwd=tmp_path)
    assert_one_line_error(done, "is not a Victor backup: manifest.json is not valid")


def test_restore_refuses_a_backup_without_checksums(tmp_path) -> None:
    manifest = {
        "format": "victor-backup",
        "format_version": 1,
        "created_at": "2026-01-01T00:00:00+00:00",
        "victor_version": "0.1.0",
        "python_version": "3.11.7",
        "postgres": {"included": True, "file": "postgres.dump", "database": "postgres"},
        "lancedb": {"included": False, "reason": "--skip-lancedb"},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "postgres.dump").write_bytes(b"PGDMP")
    done = victor("restore", str(tmp_path), env=NOT_A_DATABASE, cwd=tmp_path)
    assert_one_line_error(done, "has no checksums (backup format 1), so it cannot be verified")


def test_backup_needs_a_database(tmp_path) -> None:
    done = victor("backup", str(tmp_path / "b"), env={"LANCEDB_URI": str(tmp_path / "lancedb")}, cwd=tmp_path)
    assert_one_line_error(
        done,
        f"DATABASE_URL is not set and {tmp_path / '.victor'} holds no embedded PostgreSQL of victor dev",
    )
    assert not (tmp_path / "b").exists()


def test_backup_refuses_a_directory_that_is_not_empty(services, tmp_path) -> None:
    (tmp_path / "something").write_text("x")
    done = victor("backup", str(tmp_path), env={"DATABASE_URL": services.database_url}, cwd=tmp_path)
    assert_one_line_error(done, "already exists and is not an empty directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something"]


def test_backup_refuses_object_storage_lancedb_unless_skipped(services, tmp_path) -> None:
    env = {"DATABASE_URL": services.database_url, "LANCEDB_URI": "s3://bucket/lancedb"}
    done = victor("backup", str(tmp_path / "b"), env=env, cwd=tmp_path)
    assert_one_line_error(done, "LANCEDB_URI uses object storage (s3://)")
    assert not (tmp_path / "b").exists()


def test_backup_of_an_unreachable_server_fails_in_one_line_and_leaves_nothing(tmp_path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    done = victor("backup", str(tmp_path / "b"), "--skip-lancedb", env={"DATABASE_URL": url}, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("victor: cannot reach PostgreSQL at DATABASE_URL")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------- victor dev's own stores


@pytest.fixture
def dev_project() -> Iterator[Path]:
    """A project folder for `victor dev`, outside pytest's 0700 temp root (pgserver cannot enter that)."""
    root = Path(tempfile.mkdtemp(prefix="victor-backup-dev-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def conversation_ids(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        return [row["id"] for row in await connection.fetch("SELECT id FROM chat_conversations ORDER BY id")]
    finally:
        await connection.close()


async def add_conversations(url: str, *ids: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.executemany("INSERT INTO chat_conversations (id) VALUES ($1)", [(i,) for i in ids])
    finally:
        await connection.close()


async def test_backup_and_restore_use_victor_devs_embedded_postgres_and_lancedb(dev_project) -> None:
    # The data directory exactly as `victor dev` makes it: the marker, the embedded servers, migrations.
    data_dir = prepare_data_dir(dev_project / ".victor", fresh=False)
    lancedb_dir = Path(dev_lancedb_uri(data_dir))
    backup_dir = dev_project / "backups" / "one"
    services = DevServices(data_dir, {})
    await asyncio.to_thread(services.start)  # it runs the migrations in an event loop of its own
    try:
        url = services.env()["DATABASE_URL"]
        await add_conversations(url, "conv-a", "conv-b")
        lancedb.connect(str(lancedb_dir)).create_table("docs", data=DOCS)

        # While victor dev runs, the backup attaches to its PostgreSQL (no settings given).
        done = victor("backup", str(backup_dir), env={}, cwd=dev_project)
        assert done.returncode == 0, done.stderr
        assert "(embedded)" in done.stdout
        assert "LanceDB (1 tables)" in done.stdout
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        assert manifest["postgres"]["embedded"] is True
        assert manifest["lancedb"]["tables"] == ["docs"]

        await add_conversations(url, "conv-after")
        table = lancedb.connect(str(lancedb_dir)).open_table("docs")
        table.delete("id = 2")
        table.add([{"id": 3, "text": "added after the backup", "vector": [0.7, 0.8, 0.9]}])
    finally:
        services.stop()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    # With victor dev stopped, restore starts the embedded server itself, and stops it again.
    done = victor("restore", str(backup_dir), env={}, cwd=dev_project)
    assert done.returncode == 0, done.stderr
    assert f"into {lancedb_dir}" in done.stdout
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    services = DevServices(data_dir, {})
    await asyncio.to_thread(services.start)  # it runs the migrations in an event loop of its own
    try:
        assert await conversation_ids(services.env()["DATABASE_URL"]) == ["conv-a", "conv-b"]
    finally:
        services.stop()
    assert docs(lancedb_dir) == [{**doc, "vector": [round(v, 6) for v in doc["vector"]]} for doc in DOCS]


# ---------------------------------------------------------------- damage


@dataclass
class BackedUp:
    """A backup taken, then the stores changed after it: what a refused restore must leave alone."""

    backup_dir: Path
    env: dict[str, str]
    database_url: str
    lancedb_dir: Path


@pytest.fixture
async def backed_up(database_url, tmp_path) -> BackedUp:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)")
        await connection.executemany("INSERT INTO notes (id, body) VALUES ($1, $2)", NOTES)
    finally:
        await connection.close()
    lancedb_dir = tmp_path / "lancedb"
    lancedb.connect(str(lancedb_dir)).create_table("docs", data=DOCS)
    env = {"DATABASE_URL": database_url, "LANCEDB_URI": str(lancedb_dir)}
    backup_dir = tmp_path / "backup"
    done = victor("backup", str(backup_dir), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("UPDATE notes SET body = 'changed after the backup' WHERE id = 1")
    finally:
        await connection.close()
    lancedb.connect(str(lancedb_dir)).open_table("docs").delete("id = 1")
    return BackedUp(backup_dir, env, database_url, lancedb_dir)


def tree(directory: Path) -> dict[str, str]:
    """Every file under `directory` with its SHA-256: the exact state of a LanceDB directory."""
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def first_data_file(backup_dir: Path) -> Path:
    return sorted((backup_dir / "lancedb" / "docs.lance" / "data").iterdir())[0]


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def rewrite_manifest(change: Callable[[dict[str, object]], None]) -> Callable[[Path], None]:
    def damage(backup_dir: Path) -> None:
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        change(manifest)
        (backup_dir / "manifest.json").write_text(json.dumps(manifest))

    return damage


def name_checksum(manifest: dict[str, object], name: str, checksum: str) -> None:
    files = manifest["files"]
    assert isinstance(files, dict)
    files[name] = checksum


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "a LanceDB data file corrupted": (
        lambda b: flip_a_byte(first_data_file(b)),
        "is damaged: lancedb/docs.lance/data/",
    ),
    "the dump corrupted": (lambda b: flip_a_byte(b / "postgres.dump"), "postgres.dump does not match"),
    "the dump truncated": (
        lambda b: (b / "postgres.dump").write_bytes((b / "postgres.dump").read_bytes()[:100]),
        "postgres.dump does not match its checksum",
    ),
    "the dump missing": (lambda b: (b / "postgres.dump").unlink(), "is damaged: postgres.dump is missing"),
    "a LanceDB file missing": (lambda b: first_data_file(b).unlink(), " is missing"),
    "the whole LanceDB copy missing": (lambda b: shutil.rmtree(b / "lancedb"), "lancedb/ is missing"),
    "a file that is not in the manifest": (
        lambda b: (b / "lancedb" / "docs.lance" / "data" / "extra.lance").write_bytes(b"x"),
        "lancedb/docs.lance/data/extra.lance is not in the manifest",
    ),
    "manifest.json missing": (lambda b: (b / "manifest.json").unlink(), "it has no manifest.json"),
    "manifest.json truncated": (
        lambda b: (b / "manifest.json").write_bytes((b / "manifest.json").read_bytes()[:40]),
        "manifest.json is not valid",
    ),
    "manifest.json not UTF-8": (
        lambda b: (b / "manifest.json").write_bytes(b"\xff\xfe{}"),
        "manifest.json is not valid",
    ),
    "manifest.json a list": (lambda b: (b / "manifest.json").write_text("[]"), "manifest.json is not valid"),
    "a checksum in manifest.json changed": (
        rewrite_manifest(lambda m: name_checksum(m, "postgres.dump", "0" * 64)),
        "manifest.json does not match its checksum",
    ),
    "a checksum in manifest.json and the manifest's own changed": (
        rewrite_manifest(
            lambda m: (name_checksum(m, "postgres.dump", "0" * 64), m.update(checksum="0" * 64))
        ),
        "manifest.json does not match its checksum",
    ),
    "a path in manifest.json pointing outside": (
        rewrite_manifest(lambda m: name_checksum(m, "../outside", "0" * 64)),
        "manifest.json does not match its checksum",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
async def test_a_damaged_backup_is_refused_in_one_line_and_restores_nothing(backed_up, case) -> None:
    damage, message = DAMAGE[case]
    notes_before = await notes(backed_up.database_url)
    lancedb_before = tree(backed_up.lancedb_dir)
    docs_before = docs(backed_up.lancedb_dir)
    damage(backed_up.backup_dir)

    done = victor("restore", str(backed_up.backup_dir), env=backed_up.env, cwd=backed_up.backup_dir.parent)

    assert_one_line_error(done, message)
    assert (
        await notes(backed_up.database_url) == notes_before == [(1, "changed after the backup"), *NOTES[1:]]
    )
    assert tree(backed_up.lancedb_dir) == lancedb_before
    assert docs(backed_up.lancedb_dir) == docs_before != []
    leftovers = [p.name for p in backed_up.lancedb_dir.parent.iterdir() if p.name.startswith(".lancedb")]
    assert leftovers == []


async def test_restore_without_a_database_to_restore_into_refuses_and_changes_nothing(backed_up) -> None:
    lancedb_before = tree(backed_up.lancedb_dir)
    env = {"LANCEDB_URI": backed_up.env["LANCEDB_URI"]}
    done = victor("restore", str(backed_up.backup_dir), env=env, cwd=backed_up.backup_dir.parent)
    assert_one_line_error(done, "DATABASE_URL is not set and")
    assert tree(backed_up.lancedb_dir) == lancedb_before
