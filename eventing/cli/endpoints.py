"""Where a client command sends its request, and the options every client command shares.

A function's URL is, first found: `--url`, the `VICTOR_<NAME>_URL` setting,
the URL a running `victor dev` recorded (`.victor/dev.json`, see
`eventing.dev.state`), then `victor dev`'s default port. VICTOR_API_KEY is
sent as a Bearer token when set.
"""

from __future__ import annotations

import argparse
from typing import Any

from common.settings import Settings
from eventing.dev.ports import BROKER_PATH, PORTS
from eventing.dev.state import find_state

DEFAULT_PORT_BASE = 8000


def default_url(name: str) -> str:
    """Where `victor dev` serves `name` with the default --port-base."""
    url = f"http://127.0.0.1:{DEFAULT_PORT_BASE + PORTS[name]}"
    return url + BROKER_PATH if name == "broker" else url


def function_url(args: argparse.Namespace, settings: Settings, name: str) -> str:
    """The URL of function `name` (or the broker's ingress) for this command."""
    if getattr(args, "url", None):
        return str(args.url).rstrip("/")
    configured = settings.broker_url if name == "broker" else settings.function_urls.get(name)
    if configured:
        return configured
    state = find_state()
    if state is not None and name in state.urls:
        return state.urls[name]
    return default_url(name)


def auth_headers(settings: Settings) -> dict[str, str]:
    return {"authorization": f"Bearer {settings.client_key.reveal()}"} if settings.client_key else {}


def add_client_options(parser: argparse.ArgumentParser, name: str, *, json_help: str) -> None:
    """--url and --json, the same on every client command."""
    parser.add_argument(
        "--url",
        help=f"the {name} function's URL (default: VICTOR_{name.upper()}_URL, else what a running"
        f" `victor dev` recorded in .victor/dev.json, else {default_url(name)})",
    )
    parser.add_argument("--json", action="store_true", help=json_help)


def example(*lines: str) -> dict[str, Any]:
    """`add_parser` keywords that show examples under the options in --help."""
    return {
        "epilog": "examples:\n" + "\n".join(f"  {line}" for line in lines),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
