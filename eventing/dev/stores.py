"""PostgreSQL and Redis for `victor dev`: the configured ones, else embedded servers.

Embedded data lives under the dev data directory (`./.victor` by default) so
conversations, indexes and pending broker deliveries survive a restart of
`victor dev`. `--fresh` wipes that directory first, but only one that
`victor dev` created (it carries a marker file), never an arbitrary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from common.settings import redact_url
from eventing.dev.embedded import EmbeddedPostgres, EmbeddedRedis

MARKER = ".victor-dev"
# Inside the data directory: the embedded PostgreSQL's data and, unless LANCEDB_URI says otherwise, LanceDB.
POSTGRES_DIR = "postgres"
LANCEDB_DIR = "lancedb"


class DevDataError(RuntimeError):
    """The dev data directory cannot be used as asked."""


@dataclass(frozen=True)
class ServiceInfo:
    """One backing service as the status table shows it."""

    name: str
    url: str
    state: str


def is_dev_data_dir(directory: Path) -> bool:
    """Whether `directory` was created by `victor dev` (it carries the marker file)."""
    return (directory / MARKER).is_file()


def dev_lancedb_uri(data_dir: Path) -> str:
    """LANCEDB_URI for `victor dev` and the functions it runs, when the user has not set one."""
    return str(data_dir / LANCEDB_DIR)


def embedded_postgres_dir(data_dir: Path) -> Path:
    """Where `victor dev` keeps its embedded PostgreSQL's data when DATABASE_URL is unset."""
    return data_dir / POSTGRES_DIR


def prepare_data_dir(directory: Path, *, fresh: bool) -> Path:
    """Create the data directory (wiping it first when `fresh`); returns its absolute path."""
    directory = directory.expanduser().resolve()
    if fresh and directory.exists():
        if not (directory / MARKER).exists():
            raise DevDataError(
                f"--fresh refuses to delete {directory}: it was not created by victor dev "
                f"(no {MARKER} file); remove it yourself or pick another --data-dir"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).touch()
    return directory


class DevServices:
    """Starts what the environment lacks; `stop()` stops only what this object started.

    With `keep_data=False` the embedded PostgreSQL deletes its data when it stops
    (the tests' and benchmarks' throwaway servers).
    """

    def __init__(self, data_dir: Path, environ: Mapping[str, str], *, keep_data: bool = True) -> None:
        self.data_dir = data_dir
        self.keep_data = keep_data
        self.database_url = environ.get("DATABASE_URL") or None
        self.redis_url = environ.get("REDIS_URL") or None
        self._postgres: EmbeddedPostgres | None = None
        self._redis: EmbeddedRedis | None = None
        self.applied: list[str] = []

    def start(self) -> None:
        """Start embedded servers where no URL is configured, then apply migrations."""
        from common.store import migrate  # asyncpg and the migrations only when services are wanted

        if self.database_url is None:
            directory = embedded_postgres_dir(self.data_dir)
            self._postgres = EmbeddedPostgres(directory, delete_on_stop=not self.keep_data)
            self.database_url = self._postgres.start()
        if self.redis_url is None:
            self._redis = EmbeddedRedis(self.data_dir / "redis")
            self.redis_url = self._redis.start()
        self.applied = asyncio.run(migrate(self.database_url))

    def stop(self) -> None:
        """Stop the embedded servers (Redis first, then PostgreSQL); safe to call twice."""
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None

    def env(self) -> dict[str, str]:
        if self.database_url is None or self.redis_url is None:
            raise RuntimeError("DevServices.start() has not run")
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}

    def describe(self) -> list[ServiceInfo]:
        origin = {True: "embedded", False: "configured"}
        return [
            ServiceInfo("postgres", redact_url(self.database_url or "-"), origin[self._postgres is not None]),
            ServiceInfo("redis", redact_url(self.redis_url or "-"), origin[self._redis is not None]),
        ]


@contextlib.contextmanager
def configured_or_embedded(root: Path, env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(database URL, Redis URL): DATABASE_URL / REDIS_URL from `env`, else servers embedded under `root`.

    The database is migrated; the servers started here stop, and their data is
    deleted, when the block ends. The test harness and the benchmarks start
    their services this one way, `victor dev` through `DevServices` itself.
    """
    services = DevServices(root, env, keep_data=False)
    try:
        services.start()
        urls = services.env()
        yield urls["DATABASE_URL"], urls["REDIS_URL"]
    finally:
        services.stop()
