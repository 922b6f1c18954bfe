"""PostgreSQL (asyncpg) and LanceDB connections, and versioned schema migrations.

Migrations are `NNNN_name.sql` files kept by their owners: `common/migrations`
holds the tables every function shares (idempotency), and each function keeps
its own in `functions/<name>/migrations`. Versions are global (unique across all
the folders) and `migrate` applies the ones not yet recorded in
`schema_migrations` in version order, each in its own transaction, while holding
a PostgreSQL advisory lock so that replicas starting together apply each
migration exactly once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from traceback import walk_tb
from typing import TYPE_CHECKING, Any

from common.answers import Refusal

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)
COMMON_MIGRATIONS = Path(__file__).with_name("migrations")
# An arbitrary constant shared by every replica: the key of the migration lock.
MIGRATION_LOCK_KEY = 0x56494354  # "VICT"


class StoreUnavailable(RuntimeError):
    """PostgreSQL is not configured or not reachable."""


# Raised by the network itself (refused, reset, a pool's acquire timing out): an outage of the store
# whose client code raised it.
_NETWORK_OUTAGES = (OSError, TimeoutError)


def _postgres_outages() -> tuple[type[BaseException], ...]:
    """What asyncpg raises when PostgreSQL is away: refused or dropped connections, a server starting
    up or shutting down, no connection slot free. Looked up where asyncpg is loaded (it loads with the
    first pool): before that, no asyncpg error can exist."""
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None:
        return (StoreUnavailable,)
    return (
        StoreUnavailable,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError,
        asyncpg.CrashShutdownError,
        asyncpg.TooManyConnectionsError,
    )


def _redis_outages() -> tuple[type[BaseException], ...]:
    """redis-py's connection and timeout errors, once redis-py is loaded (with the first Redis call)."""
    errors = sys.modules.get("redis.exceptions")
    return () if errors is None else (errors.ConnectionError, errors.TimeoutError)


def store_outage(exc: BaseException) -> Refusal | None:
    """The 503 (with Retry-After, code `store_unavailable`) for an error that says PostgreSQL or Redis
    cannot be reached now; None for any other error. Its cause chain is followed, so a wrapped outage
    is one too. The message names the store and the error's kind, never its text (it may hold a DSN)."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        store = _outage_of(error)
        if store is not None:
            # StoreUnavailable's own words are written to be shown; other errors are named by kind.
            reason = str(error) if isinstance(error, StoreUnavailable) else type(error).__name__
            return Refusal.unavailable(f"{store} is unavailable ({reason}); retry later", "store_unavailable")
        error = error.__cause__ or error.__context__
    return None


def _outage_of(error: BaseException) -> str | None:
    """The store `error` says is away, or None."""
    if isinstance(error, _postgres_outages()):
        return "PostgreSQL"
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(error, asyncpg.InterfaceError) and "closed" in str(error):
        return "PostgreSQL"  # a connection lost before use
    if isinstance(error, _redis_outages()):
        return "Redis"
    if isinstance(error, _NETWORK_OUTAGES):
        tb = walk_tb(error.__traceback__)
        raised_in = {frame.f_globals.get("__name__", "").partition(".")[0] for frame, _ in tb}
        if "asyncpg" in raised_in:
            return "PostgreSQL"
        if "redis" in raised_in:
            return "Redis"
    return None


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migration_directories() -> list[Path]:
    """`common/migrations`, then every `functions/<name>/migrations` folder, in name order.

    The functions' folders are found on disk next to the installed `functions` package, never
    imported: common/ does not depend on any function's code, only collects its SQL files.
    """
    directories = [COMMON_MIGRATIONS]
    spec = importlib.util.find_spec("functions")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        directories.extend(sorted(path for path in Path(location).glob("*/migrations") if path.is_dir()))
    return directories


def migrations(directories: Iterable[Path] | None = None) -> list[Migration]:
    """Every migration of `directories` (default: all owners'), ordered by version; versions are unique."""
    found: dict[int, Migration] = {}
    for directory in migration_directories() if directories is None else directories:
        for path in sorted(directory.glob("*.sql")):
            number, _, name = path.stem.partition("_")
            version = int(number)
            if version in found:
                raise ValueError(f"two migrations share version {version}: {found[version].name}, {name}")
            found[version] = Migration(version, name, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate(dsn: str, directories: Iterable[Path] | None = None) -> list[str]:
    """Apply pending migrations of `directories` (default: all owners'); returns the names applied.

    The list is empty when the database is up to date. A migration is known by its version alone,
    so moving its file to another owner's folder never makes it run again.
    """
    import asyncpg

    connection = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
            for migration in migrations(directories):
                if migration.version in done:
                    continue
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                applied.append(f"{migration.version:04d}_{migration.name}")
                log.info("applied migration %04d_%s", migration.version, migration.name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await connection.close()
    return applied


class Store:
    """A lazily created asyncpg pool; `pool()` raises `StoreUnavailable` when it cannot connect.

    asyncpg itself is imported with the first pool, off the cold start of functions whose
    readiness does not wait for PostgreSQL. Once closed it stays closed: work still running at
    shutdown (a lease renewal, a late request) gets `StoreUnavailable` instead of a new pool that
    nobody would close.
    """

    def __init__(self, dsn: str | None, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._creating = asyncio.Lock()
        self._closed = False

    @property
    def configured(self) -> bool:
        return self.dsn is not None

    async def pool(self) -> asyncpg.Pool:
        if self.dsn is None:
            raise StoreUnavailable("DATABASE_URL is not set")
        if self._pool is not None:
            return self._pool
        async with self._creating:  # callers that arrive together share the one pool
            if self._closed:
                raise StoreUnavailable("PostgreSQL's pool is closed: the function is stopping")
            if self._pool is None:
                self._pool = await self._create_pool(self.dsn)
        return self._pool

    async def _create_pool(self, dsn: str) -> asyncpg.Pool:
        import asyncpg

        try:
            return await asyncpg.create_pool(dsn, min_size=self.min_size, max_size=self.max_size, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {type(exc).__name__}") from exc
        except asyncpg.InterfaceError as exc:  # e.g. a bad sslmode; asyncpg's text names the option only
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        except ValueError as exc:  # a DSN asyncpg cannot parse; its text may quote the DSN, so not shown
            raise StoreUnavailable("cannot connect to PostgreSQL: DATABASE_URL cannot be parsed") from exc

    async def ping(self) -> None:
        pool = await self.pool()
        async with pool.acquire(timeout=2) as connection:
            await connection.fetchval("SELECT 1")

    async def close(self) -> None:
        async with self._creating:  # a pool being made now is closed too
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def open_lancedb(uri: str) -> Any:
    """A LanceDB connection (local directory or object storage such as s3://); imported lazily."""
    import lancedb

    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
    return lancedb.connect(uri)
