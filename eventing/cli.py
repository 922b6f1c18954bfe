"""The `victor` command line: serve, dev, send, migrate and the clients of the functions."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from common.settings import Settings, SettingsError, get_settings

# Each servable process: the module and the factory that builds its ASGI app.
APPS = {
    "health": "functions.health.app:create",
    "tools": "functions.tools.app:create",
    "embeddings": "functions.embeddings.app:create",
    "chat": "functions.chat.app:create",
    "broker": "eventing.broker_app:create",
}


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"victor: {message}", file=sys.stderr)
    raise SystemExit(code)


def load_app(name: str, settings: Settings) -> Any:
    module_name, _, factory = APPS[name].partition(":")
    module = importlib.import_module(module_name)
    create: Callable[[Settings], Any] = getattr(module, factory)
    return create(settings)


def serve(name: str, settings: Settings, host: str = "0.0.0.0") -> None:
    """Serve one function on $PORT until SIGTERM; in-flight requests finish first."""
    import uvicorn

    from common.logging import configure_logging
    from common.metrics import serve_separately
    from common.runtime import exit_cleanly_after_graceful_shutdown

    configure_logging(settings)
    if settings.metrics_port:
        serve_separately(settings.metrics_port)
    app = load_app(name, settings)
    exit_cleanly_after_graceful_shutdown()
    uvicorn.run(
        app,
        host=host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        lifespan="on",
        server_header=False,
    )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    serve(args.function, settings, host=args.host)
    return 0


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


def build_parser(*, extensions: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="victor", description="Victor Functions: serve and use the functions."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_parser = commands.add_parser("serve", help="serve one function on $PORT")
    serve_parser.add_argument("function", choices=sorted(APPS))
    serve_parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    serve_parser.set_defaults(run=cmd_serve)

    migrate_parser = commands.add_parser("migrate", help="apply PostgreSQL schema migrations")
    migrate_parser.set_defaults(run=cmd_migrate)

    for register in _extensions() if extensions else ():
        register(commands)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Commands defined beside the code they drive (dev, send, chat, index, ...)."""
    found = []
    for module_name in (
        "eventing.dev_commands",
        "functions.tools.commands",
        "functions.embeddings.commands",
        "functions.chat.commands",
        "common.backup",
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        found.append(module.register)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `victor serve` is every function's cold start: the other commands' modules (the dev
    # supervisor, the clients and whatever they import) are not loaded for it.
    args = build_parser(extensions=argv[:1] != ["serve"]).parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
