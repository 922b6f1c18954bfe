"""`victor backup DIR` and `victor restore DIR`: a PostgreSQL dump plus a LanceDB snapshot, and back.

A backup directory holds `postgres.dump` (pg_dump's custom format), `lancedb/`
(a copy of the LANCEDB_URI directory) and `manifest.json`, written last, which
says when, by which versions and what was included; a directory without a
valid manifest is not a backup. Restore replaces the objects the dump holds
(in one transaction; tables created after the backup are left as they are)
and swaps the LanceDB directory in whole, so a failed restore leaves the
previous data in place.

pg_dump/pg_restore must be at least as new as the server: the newest one found
on PATH or inside the pgserver package (which ships PostgreSQL's client tools)
is used. The password goes to them through PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import msgspec

from common.settings import Settings
from eventing.cli.endpoints import example

MANIFEST = "manifest.json"
FORMAT = "victor-backup"
FORMAT_VERSION = 1
DUMP_FILE = "postgres.dump"
LANCEDB_DIR = "lancedb"
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class BackupError(Exception):
    """A backup or restore cannot go on; the message is one line for the user."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PostgresPart(msgspec.Struct, kw_only=True):
    included: bool
    file: str | None = None
    database: str | None = None
    server_version: str | None = None
    dump_tool_version: str | None = None
    bytes: int = 0


class LanceDBPart(msgspec.Struct, kw_only=True):
    included: bool
    directory: str | None = None
    tables: list[str] = msgspec.field(default_factory=list)
    # Why it was left out, when it was.
    reason: str | None = None


class Manifest(msgspec.Struct, kw_only=True):
    format: str
    format_version: int
    created_at: str
    victor_version: str
    python_version: str
    postgres: PostgresPart
    lancedb: LanceDBPart


# ---------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class Connection:
    """How the PostgreSQL client tools reach the database: a URL without the password, and the password."""

    url: str
    password: str | None

    @classmethod
    def from_dsn(cls, dsn: str) -> Connection:
        parts = urlsplit(dsn)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        if not at:
            return cls(dsn, None)
        user, _, password = userinfo.partition(":")
        netloc = f"{user}@{hostport}" if user else hostport
        return cls(urlunsplit(parts._replace(netloc=netloc)), unquote(password) or None)

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "PGPASSWORD"}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


@dataclass(frozen=True)
class ServerInfo:
    database: str
    version: str
    major: int


async def _server_info(dsn: str) -> ServerInfo:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        database = await connection.fetchval("SELECT current_database()")
        version = await connection.fetchval("SHOW server_version")
        number = int(await connection.fetchval("SHOW server_version_num"))
    finally:
        await connection.close()
    return ServerInfo(str(database), str(version).split()[0], number // 10000)


def server_info(dsn: str) -> ServerInfo:
    try:
        return asyncio.run(_server_info(dsn))
    except (OSError, TimeoutError) as exc:
        raise BackupError(f"cannot reach PostgreSQL at DATABASE_URL: {exc}", 1) from None
    except (
        Exception
    ) as exc:  # asyncpg's errors (bad password, unknown database) have no common base worth naming
        raise BackupError(f"cannot use PostgreSQL at DATABASE_URL: {type(exc).__name__}: {exc}", 1) from None


def _tool_candidates(name: str) -> list[Path]:
    found: list[Path] = []
    on_path = shutil.which(name)
    if on_path:
        found.append(Path(on_path))
    spec = importlib.util.find_spec("pgserver")
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "pginstall" / "bin" / name
        if bundled.is_file() and os.access(bundled, os.X_OK):
            found.append(bundled)
    return found


def _tool_version(tool: Path) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [str(tool), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(done.stdout)
    return (int(match.group(1)), int(match.group(2) or 0)) if match else None


def postgres_tool(name: str, minimum_major: int) -> tuple[Path, str]:
    """The newest `name` (pg_dump, pg_restore) on PATH or in pgserver, if it is at least `minimum_major`."""
    versions = [(version, tool) for tool in _tool_candidates(name) if (version := _tool_version(tool))]
    if not versions:
        raise BackupError(
            f"{name} was not found on PATH or in the pgserver package; install PostgreSQL's client tools", 1
        )
    (major, minor), tool = max(versions)
    if major < minimum_major:
        raise BackupError(
            f"{name} {major}.{minor} at {tool} is older than PostgreSQL {minimum_major}; "
            f"install the PostgreSQL {minimum_major} client tools",
            1,
        )
    return tool, f"{major}.{minor}"


def _run_tool(argv: list[str], connection: Connection, what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=connection.environment(), check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {done.returncode}"
        raise BackupError(f"{what} failed: {detail}", 1)


# ---------------------------------------------------------------- LanceDB


def local_lancedb_path(uri: str) -> Path | None:
    """The directory of a local LANCEDB_URI, or None for object storage (s3://, gs://, az://, ...)."""
    if uri.startswith("file://"):
        return Path(urlsplit(uri).path)
    if "://" in uri:
        return None
    return Path(uri).expanduser().resolve()


def _lancedb_tables(directory: Path) -> list[str]:
    return sorted(path.name.removesuffix(".lance") for path in directory.glob("*.lance") if path.is_dir())


def _object_storage_error(uri: str) -> BackupError:
    scheme = uri.split("://", 1)[0]
    return BackupError(
        f"LANCEDB_URI uses object storage ({scheme}://); snapshot it with the store's own versioning "
        "or replication, or pass --skip-lancedb to back up and restore PostgreSQL alone"
    )


# ---------------------------------------------------------------- backup


def backup(directory: Path, settings: Settings, *, skip_lancedb: bool = False) -> Manifest:
    """Write a backup of PostgreSQL and LanceDB into `directory` (new or empty)."""
    dsn = settings.database_dsn
    if dsn is None:
        raise BackupError("DATABASE_URL is not set; point it at the PostgreSQL database to back up")
    lancedb_source = None if skip_lancedb else local_lancedb_path(settings.lancedb_uri)
    if not skip_lancedb and lancedb_source is None:
        raise _object_storage_error(settings.lancedb_uri)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(f"{directory} already exists and is not an empty directory; give a new directory")

    info = server_info(dsn)
    pg_dump, dump_version = postgres_tool("pg_dump", info.major)
    connection = Connection.from_dsn(dsn)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        dump = directory / DUMP_FILE
        _run_tool(
            [
                str(pg_dump),
                "--format=custom",
                "--no-owner",
                "--no-acl",
                f"--file={dump}",
                f"--dbname={connection.url}",
            ],
            connection,
            "pg_dump",
        )
        postgres = PostgresPart(
            included=True,
            file=DUMP_FILE,
            database=info.database,
            server_version=info.version,
            dump_tool_version=dump_version,
            bytes=dump.stat().st_size,
        )
        if lancedb_source is None:
            lancedb = LanceDBPart(included=False, reason="--skip-lancedb")
        elif not lancedb_source.is_dir():
            lancedb = LanceDBPart(
                included=False, reason=f"{lancedb_source} does not exist yet (nothing indexed)"
            )
        else:
            shutil.copytree(lancedb_source, directory / LANCEDB_DIR, symlinks=True)
            lancedb = LanceDBPart(
                included=True, directory=LANCEDB_DIR, tables=_lancedb_tables(directory / LANCEDB_DIR)
            )
        manifest = Manifest(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            victor_version=_victor_version(),
            python_version=sys.version.split()[0],
            postgres=postgres,
            lancedb=lancedb,
        )
        # Written last, through a rename: a directory with a manifest is a complete backup.
        partial = directory / (MANIFEST + ".partial")
        partial.write_bytes(msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n")
        partial.replace(directory / MANIFEST)
    except BaseException:
        _remove_contents(directory, remove_directory=created)
        raise
    return manifest


def _remove_contents(directory: Path, *, remove_directory: bool) -> None:
    if remove_directory:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _victor_version() -> str:
    from common.runtime import VERSION

    return VERSION


# ---------------------------------------------------------------- restore


def read_manifest(directory: Path) -> Manifest:
    """The manifest of the backup in `directory`; `BackupError` when it is not a complete backup."""
    if not directory.exists():
        raise BackupError(f"backup directory {directory} does not exist")
    if not directory.is_dir():
        raise BackupError(f"{directory} is not a directory, so not a Victor backup")
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(f"{directory} is not a Victor backup: it has no {MANIFEST}")
    try:
        manifest = msgspec.json.decode(path.read_bytes(), type=Manifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BackupError(f"{directory} is not a Victor backup: {MANIFEST} is not valid ({exc})") from None
    if manifest.format != FORMAT:
        raise BackupError(f"{directory} is not a Victor backup: {MANIFEST} has format {manifest.format!r}")
    if manifest.format_version > FORMAT_VERSION:
        raise BackupError(
            f"{directory} was written by a newer Victor (backup format {manifest.format_version}); "
            f"this one reads format {FORMAT_VERSION}"
        )
    if manifest.postgres.included and not (directory / (manifest.postgres.file or DUMP_FILE)).is_file():
        raise BackupError(f"{directory} is incomplete: {manifest.postgres.file} is missing")
    if manifest.lancedb.included and not (directory / (manifest.lancedb.directory or LANCEDB_DIR)).is_dir():
        raise BackupError(f"{directory} is incomplete: {manifest.lancedb.directory}/ is missing")
    return manifest


def restore(directory: Path, settings: Settings, *, skip_lancedb: bool = False) -> Manifest:
    """Put the backup in `directory` back into DATABASE_URL and LANCEDB_URI."""
    manifest = read_manifest(directory)
    dsn = settings.database_dsn
    if manifest.postgres.included and dsn is None:
        raise BackupError("DATABASE_URL is not set; point it at the PostgreSQL database to restore into")
    restore_lancedb = manifest.lancedb.included and not skip_lancedb
    target = local_lancedb_path(settings.lancedb_uri) if restore_lancedb else None
    if restore_lancedb and target is None:
        raise _object_storage_error(settings.lancedb_uri)

    staged: Path | None = None
    if target is not None:
        # Copied beside the target first, so the swap after the database restore is two renames.
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.restoring-{os.getpid()}")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(directory / (manifest.lancedb.directory or LANCEDB_DIR), staged, symlinks=True)
    try:
        if manifest.postgres.included and dsn is not None:
            info = server_info(dsn)
            dumped = int((manifest.postgres.dump_tool_version or "0").split(".")[0])
            pg_restore, _ = postgres_tool("pg_restore", max(info.major, dumped))
            connection = Connection.from_dsn(dsn)
            _run_tool(
                [
                    str(pg_restore),
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--no-acl",
                    "--single-transaction",
                    "--exit-on-error",
                    f"--dbname={connection.url}",
                    str(directory / (manifest.postgres.file or DUMP_FILE)),
                ],
                connection,
                "pg_restore",
            )
    except BaseException:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
        raise
    if target is not None and staged is not None:
        _swap_in(staged, target)
    return manifest


def _swap_in(staged: Path, target: Path) -> None:
    """Replace `target` with `staged`; the old directory is removed only once the new one is in place."""
    previous = target.with_name(f".{target.name}.replaced-{int(time.time())}-{os.getpid()}")
    if target.exists():
        target.rename(previous)
    staged.rename(target)
    shutil.rmtree(previous, ignore_errors=True)


# ---------------------------------------------------------------- CLI


def _fail(error: BackupError) -> int:
    print(f"victor: {error}", file=sys.stderr)
    return error.exit_code


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    directory = Path(args.directory).expanduser()
    try:
        manifest = backup(directory, settings, skip_lancedb=args.skip_lancedb)
    except BackupError as exc:
        return _fail(exc)
    lancedb = manifest.lancedb
    included = (
        f"LanceDB ({len(lancedb.tables)} tables)" if lancedb.included else f"no LanceDB ({lancedb.reason})"
    )
    print(
        f"backed up PostgreSQL database {manifest.postgres.database!r} "
        f"({manifest.postgres.bytes} bytes) and {included} to {directory}"
    )
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    directory = Path(args.directory).expanduser()
    try:
        manifest = restore(directory, settings, skip_lancedb=args.skip_lancedb)
    except BackupError as exc:
        return _fail(exc)
    parts = []
    if manifest.postgres.included:
        parts.append(f"PostgreSQL (database {manifest.postgres.database!r} as of {manifest.created_at})")
    if manifest.lancedb.included and not args.skip_lancedb:
        parts.append(f"LanceDB ({len(manifest.lancedb.tables)} tables) into {settings.lancedb_uri}")
    print(f"restored {' and '.join(parts) or 'nothing'} from {directory}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `backup` and `restore` to the `victor` command line."""
    backup_parser = commands.add_parser(
        "backup",
        help="write a PostgreSQL dump and a LanceDB snapshot into a new directory",
        **example("victor backup backups/2026-11-30", "victor backup /tmp/db-only --skip-lancedb"),
    )
    backup_parser.add_argument("directory", help="a new or empty directory to write the backup into")
    backup_parser.add_argument("--skip-lancedb", action="store_true", help="back up PostgreSQL alone")
    backup_parser.set_defaults(run=cmd_backup)

    restore_parser = commands.add_parser(
        "restore",
        help="restore PostgreSQL and LanceDB from a directory written by `victor backup`",
        **example("victor restore backups/2026-11-30"),
    )
    restore_parser.add_argument("directory", help="a directory written by `victor backup`")
    restore_parser.add_argument("--skip-lancedb", action="store_true", help="restore PostgreSQL alone")
    restore_parser.set_defaults(run=cmd_restore)
