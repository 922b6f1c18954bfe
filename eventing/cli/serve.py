"""`victor serve FUNCTION`: one function (or the broker) on $PORT, as every container runs it."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from common.settings import FUNCTION_NAMES, Settings, require_extra
from eventing.cli.endpoints import example

# What `victor serve` can run: the broker, every function and the dead-letter sink.
SERVABLE = ("broker", "dead-letters", *FUNCTION_NAMES)
APP_MODULES = {"broker": "eventing.broker.app", "dead-letters": "eventing.dead_letters"}


def load_app(name: str, settings: Settings) -> Any:
    """Build the ASGI app of `name`; only that one's module is imported (this is every cold start).

    A function whose extra is not installed (embeddings without `victor-functions[embeddings]`) is
    refused with `SettingsError` before anything heavy is imported.
    """
    require_extra(name)
    module = importlib.import_module(APP_MODULES.get(name, f"functions.{name}.app"))
    create: Callable[[Settings], Any] = module.create
    return create(settings)


def serve(name: str, settings: Settings, host: str = "0.0.0.0") -> None:
    """Serve one function on $PORT until SIGTERM; in-flight requests finish first.

    Every connection is held to `settings.http_limits` (header size and count, header-read
    and keep-alive timeouts; see common/http_limits.py).
    """
    import uvicorn

    from common.http_limits import uvicorn_options
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
        **uvicorn_options(settings.http_limits),
    )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    serve(args.function, settings, host=args.host)
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve` to the `victor` command line."""
    serve_parser = commands.add_parser(
        "serve", help="serve one function on $PORT", **example("PORT=8080 victor serve chat")
    )
    serve_parser.add_argument(
        "function", choices=sorted(SERVABLE), help=f"what to serve: {', '.join(sorted(SERVABLE))}"
    )
    serve_parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    serve_parser.set_defaults(run=cmd_serve)
