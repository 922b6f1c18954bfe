"""`victor migrate`: apply the PostgreSQL schema migrations to DATABASE_URL."""

from __future__ import annotations

import argparse
import asyncio

from common.settings import Settings
from eventing.cli.endpoints import example
from eventing.cli.errors import fail


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from common.store import migrate

    if settings.database_dsn is None:
        fail("DATABASE_URL is not set; give a postgresql:// URL (victor dev starts an embedded one)")
    try:
        applied = asyncio.run(migrate(settings.database_dsn))  # type: ignore[arg-type]
    except OSError as exc:
        fail(f"cannot reach PostgreSQL at DATABASE_URL: {exc}", 1)
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `migrate` to the `victor` command line."""
    migrate_parser = commands.add_parser(
        "migrate",
        help="apply PostgreSQL schema migrations",
        **example("DATABASE_URL=postgresql://victor@db/victor victor migrate"),
    )
    migrate_parser.set_defaults(run=cmd_migrate)
