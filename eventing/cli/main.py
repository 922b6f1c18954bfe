"""The `victor` command line: serve, dev, send, migrate, backup and the clients of the functions.

Each command group is one module of this package with a `register` function;
`COMMAND_GROUPS` lists them once. Their modules import their heavy
dependencies (the dev supervisor, httpx, the function apps) inside the
command, so `victor serve`, every function's cold start, loads none of them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from common.settings import SettingsError, get_settings
from eventing.cli import backup, chat, dev, embeddings, migrate, send, serve, tools
from eventing.cli.dotenv import DotenvError, load_dotenv
from eventing.cli.errors import fail

# Help lists the commands in this order.
COMMAND_GROUPS: tuple[Callable[[Any], None], ...] = (
    serve.register,
    migrate.register,
    dev.register,
    send.register,
    tools.register,
    embeddings.register,
    chat.register,
    backup.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The `victor` parser with every command group; each subcommand sets `run(args, settings)`."""
    parser = argparse.ArgumentParser(
        prog="victor", description="Victor Functions: serve and use the functions."
    )
    parser.add_argument("--version", action="version", version=f"victor {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMAND_GROUPS:
        register(commands)
    return parser


def version() -> str:
    """The installed package's version."""
    try:
        return importlib.metadata.version("victor-functions")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        load_dotenv(os.environ)  # ./.env; the environment wins
    except (DotenvError, OSError) as exc:
        fail(str(exc))
    try:
        settings = get_settings()
    except SettingsError as exc:
        fail(str(exc))
    try:
        return int(args.run(args, settings) or 0)
    except SettingsError as exc:  # e.g. a Trigger manifest the broker cannot serve
        fail(str(exc))
    except KeyboardInterrupt:
        return 130
