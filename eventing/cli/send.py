"""`victor send TYPE`: one CloudEvent to the broker (or any URL), and the reply printed."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from common.cloudevents import CloudEvent, CloudEventError, new_event, to_structured
from common.settings import Settings
from eventing.cli.endpoints import example, function_url
from eventing.cli.errors import fail
from eventing.dev.ports import DEFAULT_DATA_DIR, EVENT_TOKEN_FILE


def send_credentials(settings: Settings) -> dict[str, str]:
    """The event token to send: VICTOR_EVENT_TOKEN, else the one a `victor dev` run left in ./.victor."""
    token = settings.event_token.reveal() if settings.event_token else None
    if token is None:
        try:
            token = (Path(DEFAULT_DATA_DIR) / EVENT_TOKEN_FILE).read_text(encoding="utf-8").strip() or None
        except OSError:  # no victor dev run here: send without a token
            token = None
    return {"authorization": f"Bearer {token}"} if token else {}


def parse_extensions(pairs: Sequence[str]) -> dict[str, str]:
    extensions = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"--extension expects NAME=VALUE, got {pair!r}")
        extensions[name] = value
    return extensions


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    from eventing.client import DeliveryError

    try:
        data: Any = msgspec.json.decode(args.data.encode("utf-8")) if args.data is not None else None
    except msgspec.DecodeError as exc:
        fail(f"--data is not valid JSON: {exc}")
    try:
        event = new_event(
            args.type,
            args.source,
            data,
            id=args.id,
            subject=args.subject,
            extensions=parse_extensions(args.extension),
        )
    except CloudEventError as exc:
        fail(exc.message)
    target = args.to or function_url(args, settings, "broker")
    try:
        reply = asyncio.run(_send(target, event, args.timeout, send_credentials(settings)))
    except DeliveryError as exc:
        if exc.status == 0:
            if isinstance(exc.__cause__, httpx.TimeoutException | TimeoutError):
                fail(
                    f"{target} gave no answer within {args.timeout:g} s; raise --timeout or check its logs", 1
                )
            fail(f"cannot reach {target}: {type(exc.__cause__).__name__}", 1)
        fail(f"{target} did not accept the event: {' '.join(str(exc).split())}", 1)
    if args.json:
        reply_json = msgspec.json.decode(to_structured(reply)[1]) if reply is not None else None
        print(msgspec.json.encode({"target": target, "reply": reply_json}).decode())
    elif reply is None:
        print(f"accepted by {target} (no reply event)")
    else:
        print(to_structured(reply)[1].decode("utf-8"))
    return 0


async def _send(
    target: str, event: CloudEvent, timeout: float, credentials: dict[str, str]
) -> CloudEvent | None:
    # httpx and the client are loaded only when an event is sent (not for `victor serve`).
    import httpx

    from eventing.client import send_event

    async with httpx.AsyncClient() as http:
        return await send_event(http, target, event, timeout=timeout, credentials=credentials)


def register(commands: Any) -> None:
    send = commands.add_parser(
        "send",
        help="send a CloudEvent to the broker (or --to a URL)",
        **example(
            "victor send dev.knative.sources.ping --data '{}'",
            'victor send ai.victor.chat.requested --data \'{"message": "hi"}\' --extension conversationid=c1',
        ),
    )
    send.add_argument("type", help="event type, e.g. dev.knative.sources.ping")
    send.add_argument("--data", help="event data as JSON")
    send.add_argument("--source", default="/victor/cli", help="event source (/victor/cli)")
    send.add_argument(
        "--to",
        "--url",
        dest="to",
        help="target URL (default: VICTOR_BROKER_URL, else the broker a running `victor dev` recorded,"
        " else http://127.0.0.1:8000/victor/default)",
    )
    send.add_argument("--id", help="event id (default: a new UUID)")
    send.add_argument("--subject", help="event subject")
    send.add_argument(
        "--extension",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a CloudEvent extension attribute (repeatable), e.g. conversationid=c1",
    )
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    send.add_argument("--json", action="store_true", help="print the target and the reply event as one JSON")
    send.set_defaults(run=cmd_send)
