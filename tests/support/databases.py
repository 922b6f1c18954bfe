"""Databases of a test's own on the shared PostgreSQL server, dropped afterwards; and PostgreSQL
servers of a test's own, which it may stop and start again (outages)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from common.store import migrate
from eventing.dev.embedded import EmbeddedPostgres


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (the query, e.g. ?host=/socket/dir, kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """The URL of a new, empty database on `server_url`'s server; dropped (connections forced) on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def private_postgres() -> AsyncIterator[EmbeddedPostgres]:
    """An embedded, migrated PostgreSQL server of the test's own: `stop()` takes it away, `start()`
    brings it back with its data at the same URL. Never the shared server, which other tests use."""
    # Outside pytest's temp root, as the shared one (tests/conftest.py says why).
    root = Path(tempfile.mkdtemp(prefix="victor-test-private-pg-"))
    server = EmbeddedPostgres(root / "postgres")
    try:
        await migrate(server.start())
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
