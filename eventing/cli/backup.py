"""`victor backup DIR` and `victor restore DIR`: a PostgreSQL dump plus a LanceDB snapshot, and back.

The stores are found the way `victor dev` and the functions find them:
DATABASE_URL, else the embedded PostgreSQL in `victor dev`'s data directory
(`--data-dir`, `./.victor` by default; started for the command when `victor dev`
is not running); LANCEDB_URI, else `<data dir>/lancedb` when that directory was
made by `victor dev`, else the setting's default.

A backup directory holds `postgres.dump` (pg_dump's custom format), `lancedb/`
(a copy of the LanceDB directory) and `manifest.json`, written last, which says
when, by which versions and what was included, and carries the SHA-256 of every
file and of itself. A directory without a valid manifest is not a backup.
Restore verifies every checksum before it touches anything: a damaged, missing
or unlisted file refuses the whole restore in one line. Then it replaces the
objects the dump holds (in one transaction; tables created after the backup are
left as they are) and swaps the LanceDB directory in whole, so a failed restore
leaves the previous data in place.

pg_dump/pg_restore must be at least as new as the server: the ones inside the
pgserver package (which ships PostgreSQL's client tools) are used when they
are, so no system PostgreSQL is needed; otherwise the newest on PATH. The
password goes to them through PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

import msgspec

from common.settings import Settings
from eventing.cli.endpoints import example
from eventing.dev.ports import DEFAULT_DATA_DIR
from eventing.dev.stores import dev_lancedb_uri, embedded_postgres_dir, is_dev_data_dir

MANIFEST = "manifest.json"
FORMAT = "victor-backup"
# 2: every file's SHA-256 and the manifest's own are recorded and verified.
FORMAT_VERSION = 2
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
    # Whether it came from victor dev's embedded PostgreSQL rather than DATABASE_URL.
    embedded: bool = False


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
    # Every file of the backup but the manifest (a relative POSIX path) and its SHA-256, hex.
    files: dict[str, str] = msgspec.field(default_factory=dict)
    # The SHA-256 of this manifest encoded with `checksum` empty: an edited manifest is refused too.
    checksum: str = ""


def manifest_checksum(manifest: Manifest) -> str:
    """The checksum `manifest` must carry: SHA-256 of its JSON encoding with `checksum` empty."""
    unsigned = msgspec.structs.replace(manifest, checksum="")
    return hashlib.sha256(msgspec.json.encode(unsigned)).hexdigest()


def file_checksum(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def backup_files(directory: Path) -> list[str]:
    """Every file under `directory` but the manifest, as sorted relative POSIX paths."""
    found = []
    for root, _, names in os.walk(directory):
        for name in names:
            relative = (Path(root) / name).relative_to(directory).as_posix()
            if relative != MANIFEST:
                found.append(relative)
    return sorted(found)


# ---------------------------------------------------------------- where the stores are


@dataclass(frozen=True)
class Stores:
    """Where the data lives: the configured PostgreSQL or victor dev's embedded one, and LanceDB."""

    dsn: str | None
    # victor dev's embedded PostgreSQL data directory, used when DATABASE_URL is unset.
    embedded_postgres: Path | None
    lancedb_uri: str
    data_dir: Path

    @property
    def has_postgres(self) -> bool:
        return self.dsn is not None or self.embedded_postgres is not None

    def no_postgres(self, what: str) -> BackupError:
        return BackupError(
            f"DATABASE_URL is not set and {self.data_dir} holds no embedded PostgreSQL of victor dev; "
            f"set DATABASE_URL to the database {what}, or pass --data-dir"
        )


def locate_stores(settings: Settings, data_dir: Path, environ: Mapping[str, str]) -> Stores:
    """The stores `victor dev` (run with `data_dir`) and the functions it runs use, as they find them."""
    data_dir = data_dir.expanduser().resolve()
    dev = is_dev_data_dir(data_dir)
    # victor dev sets LANCEDB_URI for its functions only when the user has not.
    lancedb_uri = dev_lancedb_uri(data_dir) if dev and "LANCEDB_URI" not in environ else settings.lancedb_uri
    embedded = embedded_postgres_dir(data_dir)
    has_embedded = dev and settings.database_dsn is None and (embedded / "PG_VERSION").is_file()
    return Stores(settings.database_dsn, embedded if has_embedded else None, lancedb_uri, data_dir)


@contextlib.contextmanager
def postgres_dsn(stores: Stores) -> Iterator[str]:
    """DATABASE_URL, or the embedded server's socket URL (started here if victor dev is not running)."""
    if stores.dsn is not None:
        yield stores.dsn
        return
    if stores.embedded_postgres is None:
        raise RuntimeError("no PostgreSQL to connect to")
    from eventing.dev.embedded import EmbeddedPostgres, EmbeddedUnavailable

    # pgserver attaches to a server victor dev runs, and stops only one it started itself.
    server = EmbeddedPostgres(stores.embedded_postgres)
    try:
        url = server.start()
    except EmbeddedUnavailable as exc:
        raise BackupError(str(exc), 1) from None
    except Exception as exc:  # pgserver raises what initdb/pg_ctl raise; one line is all the user needs
        raise BackupError(
            f"cannot start the embedded PostgreSQL in {stores.embedded_postgres}: {exc}".splitlines()[0], 1
        ) from None
    try:
        yield url
    finally:
        server.stop()


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


def _bundled_tools(name: str) -> list[Path]:
    """`name` as the pgserver package ships it, if installed."""
    spec = importlib.util.find_spec("pgserver")
    found = []
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


def postgres_tool(name: str, minimum_major: int, *, bundled_only: bool = False) -> tuple[Path, str]:
    """`name` (pg_dump, pg_restore) from pgserver if it is at least `minimum_major`, else the newest one."""
    bundled = [(version, tool) for tool in _bundled_tools(name) if (version := _tool_version(tool))]
    if bundled and max(bundled)[0][0] >= minimum_major:
        (major, minor), tool = max(bundled)
        return tool, f"{major}.{minor}"
    on_path = None if bundled_only else shutil.which(name)
    system = (
        [(version, Path(on_path)) for version in [_tool_version(Path(on_path))] if version] if on_path else []
    )
    versions = bundled + system
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


def backup(directory: Path, stores: Stores, *, skip_lancedb: bool = False) -> Manifest:
    """Write a backup of PostgreSQL and LanceDB into `directory` (new or empty)."""
    if not stores.has_postgres:
        raise stores.no_postgres("to back up")
    lancedb_source = None if skip_lancedb else local_lancedb_path(stores.lancedb_uri)
    if not skip_lancedb and lancedb_source is None:
        raise _object_storage_error(stores.lancedb_uri)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(f"{directory} already exists and is not an empty directory; give a new directory")

    with postgres_dsn(stores) as dsn:
        info = server_info(dsn)
        pg_dump, dump_version = postgres_tool(
            "pg_dump", info.major, bundled_only=stores.embedded_postgres is not None
        )
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
            return _finish_backup(directory, info, dump_version, stores, lancedb_source, skip_lancedb)
        except BaseException:
            _remove_contents(directory, remove_directory=created)
            raise


def _finish_backup(
    directory: Path,
    info: ServerInfo,
    dump_version: str,
    stores: Stores,
    lancedb_source: Path | None,
    skip_lancedb: bool,
) -> Manifest:
    """Copy LanceDB beside the dump, then write the manifest with every file's checksum."""
    postgres = PostgresPart(
        included=True,
        file=DUMP_FILE,
        database=info.database,
        server_version=info.version,
        dump_tool_version=dump_version,
        bytes=(directory / DUMP_FILE).stat().st_size,
        embedded=stores.embedded_postgres is not None,
    )
    if lancedb_source is None:
        lancedb = LanceDBPart(included=False, reason="--skip-lancedb" if skip_lancedb else None)
    elif not lancedb_source.is_dir():
        lancedb = LanceDBPart(included=False, reason=f"{lancedb_source} does not exist yet (nothing indexed)")
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
        files={name: file_checksum(directory / name) for name in backup_files(directory)},
    )
    manifest = msgspec.structs.replace(manifest, checksum=manifest_checksum(manifest))
    # Written last, through a rename: a directory with a manifest is a complete backup.
    partial = directory / (MANIFEST + ".partial")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n")
    partial.replace(directory / MANIFEST)
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
    """The manifest of the backup in `directory`; `BackupError` when it is not a complete, intact backup."""
    if not directory.exists():
        raise BackupError(f"backup directory {directory} does not exist")
    if not directory.is_dir():
        raise BackupError(f"{directory} is not a directory, so not a Victor backup")
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(f"{directory} is not a Victor backup: it has no {MANIFEST}")
    try:
        manifest = msgspec.json.decode(path.read_bytes(), type=Manifest)
    except (msgspec.DecodeError, msgspec.ValidationError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackupError(f"{directory} is not a Victor backup: {MANIFEST} is not valid ({detail})") from None
    if manifest.format != FORMAT:
        raise BackupError(f"{directory} is not a Victor backup: {MANIFEST} has format {manifest.format!r}")
    if manifest.format_version > FORMAT_VERSION:
        raise BackupError(
            f"{directory} was written by a newer Victor (backup format {manifest.format_version}); "
            f"this one reads format {FORMAT_VERSION}"
        )
    if manifest.format_version < FORMAT_VERSION:
        raise BackupError(
            f"{directory} has no checksums (backup format {manifest.format_version}), so it cannot be "
            "verified and is not restored; restore it with the Victor that wrote it"
        )
    if manifest.checksum != manifest_checksum(manifest):
        raise BackupError(f"{directory} is damaged: {MANIFEST} does not match its checksum; nothing restored")
    return manifest


def verify(directory: Path, manifest: Manifest) -> None:
    """Every file the manifest lists is there, unchanged, and nothing else is; else one-line `BackupError`."""
    problems = []
    listed = set(manifest.files)
    unsafe = sorted(name for name in listed if not _is_inside(name))
    problems += [f"{name} points outside the backup" for name in unsafe]
    if manifest.postgres.included and (manifest.postgres.file or DUMP_FILE) not in listed:
        problems.append(f"{manifest.postgres.file or DUMP_FILE} is not in the manifest")
    if manifest.lancedb.included:
        prefix = f"{manifest.lancedb.directory or LANCEDB_DIR}/"
        if not (directory / prefix).is_dir() or not any(name.startswith(prefix) for name in listed):
            problems.append(f"{prefix} is missing")
    present = set(backup_files(directory))
    problems += [f"{name} is missing" for name in sorted(listed - present) if name not in unsafe]
    problems += [f"{name} is not in the manifest" for name in sorted(present - listed)]
    for name in sorted(listed & present):
        if file_checksum(directory / name) != manifest.files[name]:
            problems.append(f"{name} does not match its checksum")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BackupError(f"{directory} is damaged: {problems[0]}{more}; nothing restored")


def _is_inside(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def restore(directory: Path, stores: Stores, *, skip_lancedb: bool = False) -> Manifest:
    """Put the backup in `directory` back into the stores, once every file checks out."""
    manifest = read_manifest(directory)
    verify(directory, manifest)
    if manifest.postgres.included and not stores.has_postgres:
        raise stores.no_postgres("to restore into")
    restore_lancedb = manifest.lancedb.included and not skip_lancedb
    target = local_lancedb_path(stores.lancedb_uri) if restore_lancedb else None
    if restore_lancedb and target is None:
        raise _object_storage_error(stores.lancedb_uri)

    staged: Path | None = None
    if target is not None:
        # Copied beside the target first, so the swap after the database restore is two renames.
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.restoring-{os.getpid()}")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(directory / (manifest.lancedb.directory or LANCEDB_DIR), staged, symlinks=True)
    try:
        if manifest.postgres.included:
            _restore_postgres(directory, manifest, stores)
    except BaseException:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
        raise
    if target is not None and staged is not None:
        _swap_in(staged, target)
    return manifest


def _restore_postgres(directory: Path, manifest: Manifest, stores: Stores) -> None:
    with postgres_dsn(stores) as dsn:
        info = server_info(dsn)
        dumped = int((manifest.postgres.dump_tool_version or "0").split(".")[0])
        pg_restore, _ = postgres_tool(
            "pg_restore", max(info.major, dumped), bundled_only=stores.embedded_postgres is not None
        )
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


def _stores(args: argparse.Namespace, settings: Settings) -> Stores:
    return locate_stores(settings, Path(args.data_dir), os.environ)


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    directory = Path(args.directory).expanduser()
    stores = _stores(args, settings)
    try:
        manifest = backup(directory, stores, skip_lancedb=args.skip_lancedb)
    except BackupError as exc:
        return _fail(exc)
    lancedb = manifest.lancedb
    included = (
        f"LanceDB ({len(lancedb.tables)} tables)" if lancedb.included else f"no LanceDB ({lancedb.reason})"
    )
    source = " (embedded)" if manifest.postgres.embedded else ""
    print(
        f"backed up PostgreSQL database {manifest.postgres.database!r}{source} "
        f"({manifest.postgres.bytes} bytes) and {included}, {len(manifest.files)} files "
        f"with checksums, to {directory}"
    )
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    directory = Path(args.directory).expanduser()
    stores = _stores(args, settings)
    try:
        manifest = restore(directory, stores, skip_lancedb=args.skip_lancedb)
    except BackupError as exc:
        return _fail(exc)
    parts = []
    if manifest.postgres.included:
        parts.append(f"PostgreSQL (database {manifest.postgres.database!r} as of {manifest.created_at})")
    if manifest.lancedb.included and not args.skip_lancedb:
        parts.append(f"LanceDB ({len(manifest.lancedb.tables)} tables) into {stores.lancedb_uri}")
    print(f"restored {' and '.join(parts) or 'nothing'} from {directory}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `backup` and `restore` to the `victor` command line."""
    backup_parser = commands.add_parser(
        "backup",
        help="write a PostgreSQL dump and a LanceDB snapshot, checksummed, into a new directory",
        **example("victor backup backups/2026-11-30", "victor backup /tmp/db-only --skip-lancedb"),
    )
    backup_parser.add_argument("directory", help="a new or empty directory to write the backup into")
    restore_parser = commands.add_parser(
        "restore",
        help="verify a directory written by `victor backup`, then restore PostgreSQL and LanceDB from it",
        **example("victor restore backups/2026-11-30"),
    )
    restore_parser.add_argument("directory", help="a directory written by `victor backup`")
    for parser, verb in ((backup_parser, "back up"), (restore_parser, "restore")):
        parser.add_argument("--skip-lancedb", action="store_true", help=f"{verb} PostgreSQL alone")
        parser.add_argument(
            "--data-dir",
            default=DEFAULT_DATA_DIR,
            help="victor dev's data directory, for its embedded PostgreSQL and LanceDB (./.victor)",
        )
    backup_parser.set_defaults(run=cmd_backup)
    restore_parser.set_defaults(run=cmd_restore)
