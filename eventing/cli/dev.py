"""`victor dev`: the whole system as local processes.

`victor dev` starts embedded PostgreSQL and Redis when DATABASE_URL / REDIS_URL
are unset (data under `--data-dir`, `./.victor` by default, kept between runs),
applies the migrations, then runs the broker and every function as its own
`victor serve NAME` process on fixed local ports (broker 8000, chat 8001,
tools 8002, embeddings 8003, health 8004, shifted by `--port-base`). Each
process gets the URLs of the others, so the broker's Trigger subscribers
resolve to these ports. A process that crashes is restarted with exponential
backoff. The URLs are recorded in `<data dir>/dev.json` while it runs, where
`victor tools`, `chat`, `index`, `search` and `send` find them. Ctrl-C or
SIGTERM stops every process and the embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any

from common.settings import Settings
from eventing.cli.endpoints import example
from eventing.cli.errors import fail
from eventing.dev.ports import DEAD_LETTER_OFFSET, DEFAULT_DATA_DIR, EVENT_TOKEN_FILE, PORTS
from eventing.dev.state import remove_state, write_state


def parse_only(value: str | None) -> list[str]:
    if not value:
        return list(PORTS)
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in PORTS]
    if unknown or not names:
        named = ", ".join(unknown) if unknown else repr(value)
        fail(f"--only: unknown name {named}; choose from {', '.join(PORTS)}")
    return names


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def write_event_token(data_dir: Path, token: str) -> None:
    """Leave this run's event token where `victor send` finds it (readable by the user only)."""
    path = data_dir / EVENT_TOKEN_FILE
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    print(f"events: delivered events carry this run's token; victor send reads it from {path}", flush=True)


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    # The runner (uvicorn, httpx, the supervisor) is loaded only when `victor dev` runs.
    from eventing.dev.embedded import EmbeddedUnavailable
    from eventing.dev.runner import choose_dev_embedding_model, plan_processes, ports_in_use, supervise
    from eventing.dev.stores import DevDataError, DevServices, dev_lancedb_uri, prepare_data_dir

    selected = parse_only(args.only)
    if args.ping_interval is not None and args.ping_interval < 0:
        fail(f"--ping-interval must be 0 (off) or a positive number of seconds, got {args.ping_interval:g}")
    if not 1 <= args.port_base <= 65535 - DEAD_LETTER_OFFSET:
        fail(f"--port-base must be between 1 and {65535 - DEAD_LETTER_OFFSET}, got {args.port_base}")
    try:
        data_dir = prepare_data_dir(Path(args.data_dir), fresh=args.fresh)
    except (DevDataError, OSError) as exc:
        fail(str(exc))
    environ = dict(os.environ)
    # Before anything starts: a port another process holds would make its child crash-loop.
    taken = ports_in_use(plan_processes(selected, args.port_base, environ))
    if taken:
        fail(f"port {', '.join(taken)} is already in use; stop what holds it or pass --port-base")
    environ.setdefault("LANCEDB_URI", dev_lancedb_uri(data_dir))
    choose_dev_embedding_model(environ)
    services = DevServices(data_dir, environ)
    # Until the event loop takes over the signals, SIGTERM unwinds like Ctrl-C so cleanup still runs.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            services.start()
        except EmbeddedUnavailable as exc:
            fail(str(exc))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            fail(f"cannot start the dev services: {first_line}; see the logs under {data_dir}", 1)
        environ.update(services.env())
        if services.applied:
            print("migrations applied: " + ", ".join(services.applied), flush=True)
        plan = plan_processes(selected, args.port_base, environ)
        if plan.event_token is not None:
            write_event_token(data_dir, plan.event_token)
        # Client commands (`victor tools list`, ...) read the URLs from here: no settings needed.
        write_state(data_dir, plan.urls)
        return asyncio.run(supervise(plan, services, args))
    finally:
        remove_state(data_dir)
        services.stop()
        signal.signal(signal.SIGTERM, previous)


def register(commands: Any) -> None:
    dev = commands.add_parser(
        "dev",
        help="run the broker and every function locally",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        **example("victor dev", "victor dev --port-base 9000 --only broker,chat,tools"),
    )
    dev.add_argument("--only", help="comma-separated subset: broker,chat,tools,embeddings,health")
    dev.add_argument("--port-base", type=int, default=8000, help="broker port; functions follow (8000)")
    dev.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="embedded data and LanceDB (./.victor)")
    dev.add_argument("--fresh", action="store_true", help="wipe the data directory first")
    dev.add_argument(
        "--ping-interval",
        type=float,
        default=None,
        help="seconds between health pings (default: the PingSource schedule; 0 disables)",
    )
    dev.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for readiness")
    dev.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    dev.add_argument("--max-backoff", type=float, default=30.0, help="longest wait before a restart")
    dev.set_defaults(run=cmd_dev)
