"""`victor dev` (the whole system as local processes) and `victor send` (one CloudEvent).

`victor dev` starts embedded PostgreSQL and Redis when DATABASE_URL / REDIS_URL
are unset (data under `--data-dir`, `./.victor` by default, kept between runs),
applies the migrations, then runs the broker and every function as its own
`victor serve NAME` process on fixed local ports (broker 8000, chat 8001,
tools 8002, embeddings 8003, health 8004, shifted by `--port-base`). Each
process gets the URLs of the others, so the broker's Trigger subscribers
resolve to these ports. A function whose package is not built yet is listed
as skipped; one that crashes is restarted with exponential backoff. Ctrl-C or
SIGTERM stops every process and the embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import msgspec
import uvicorn

from common.cloudevents import CloudEventError, new_event, to_structured
from common.settings import FUNCTION_NAMES, Settings
from eventing.cli import fail
from eventing.client import DeliveryError, send_event
from eventing.dev_dead_letters import SERVICE_NAME as DEAD_LETTER_SERVICE
from eventing.dev_dead_letters import DeadLetterDisplay
from eventing.dev_ping import load_ping_schedules, ping_forever
from eventing.dev_services import DevDataError, DevServices, ServiceInfo, prepare_data_dir
from eventing.supervisor import Backoff, ProcessSpec, Supervisor

# Port offsets from --port-base; the broker first, then the functions in a fixed order.
PORTS = {"broker": 0, "chat": 1, "tools": 2, "embeddings": 3, "health": 4}
# The dead-letter display runs inside `victor dev` itself, on the port after the functions.
DEAD_LETTER_OFFSET = 5
MODULES = {
    "broker": "eventing.broker_app",
    "chat": "functions.chat.app",
    "tools": "functions.tools.app",
    "embeddings": "functions.embeddings.app",
    "health": "functions.health.app",
}
BROKER_PATH = "/victor/default"
DEFAULT_BROKER_URL = f"http://127.0.0.1:8000{BROKER_PATH}"
DEFAULT_TRIGGERS_PATH = "knative/base"


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class DevPlan:
    """The processes `victor dev` runs, the ones it skips (and why), and every local URL."""

    specs: list[ProcessSpec]
    skipped: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    dead_letter_port: int | None = None

    @property
    def broker_url(self) -> str | None:
        return self.urls.get("broker")


def module_missing(module: str) -> bool:
    """Whether the module cannot be found at all (an import error inside it is a crash instead)."""
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def plan_processes(
    selected: Sequence[str],
    port_base: int,
    environ: Mapping[str, str],
    *,
    python: str = sys.executable,
    modules: Mapping[str, str] = MODULES,
) -> DevPlan:
    """One `victor serve` process per selected name that is built, with its environment."""
    running = [name for name in PORTS if name in selected and not module_missing(modules[name])]
    skipped = {
        name: f"not built yet ({modules[name]} is missing)"
        for name in PORTS
        if name in selected and name not in running
    }
    base = {name: f"http://127.0.0.1:{port_base + PORTS[name]}" for name in running}
    urls = {name: (url + BROKER_PATH if name == "broker" else url) for name, url in base.items()}
    shared = dict(environ)
    shared.setdefault("VICTOR_PROFILE", "development")
    for name in FUNCTION_NAMES:
        # Only running functions are advertised, so health reports what is really there.
        shared.pop(f"VICTOR_{name.upper()}_URL", None)
        if name in urls:
            shared[f"VICTOR_{name.upper()}_URL"] = urls[name]
    if "broker" in urls:
        shared["VICTOR_BROKER_URL"] = urls["broker"]
    dead_letter_port = port_base + DEAD_LETTER_OFFSET if "broker" in urls else None
    specs = [
        ProcessSpec(
            name=name,
            argv=[python, "-m", "eventing.cli", "serve", name, "--host", "127.0.0.1"],
            env={**shared, "PORT": str(port_base + PORTS[name]), **extra},
            ready_url=f"{base[name]}/health/ready",
        )
        for name in running
        for extra in [_broker_env(port_base, environ) if name == "broker" else {}]
    ]
    return DevPlan(specs=specs, skipped=skipped, urls=urls, dead_letter_port=dead_letter_port)


def _broker_env(port_base: int, environ: Mapping[str, str]) -> dict[str, str]:
    """Every Trigger subscriber resolves, even to a function not running (its events dead-letter)."""
    env = {
        f"VICTOR_{name.upper()}_URL": f"http://127.0.0.1:{port_base + PORTS[name]}" for name in FUNCTION_NAMES
    }
    dead_letters = f"{DEAD_LETTER_SERVICE}=http://127.0.0.1:{port_base + DEAD_LETTER_OFFSET}"
    # The user's own entries come last, so they win over the dev defaults.
    env["VICTOR_SUBSCRIBER_URLS"] = ",".join(
        filter(None, [dead_letters, environ.get("VICTOR_SUBSCRIBER_URLS")])
    )
    return env


def choose_dev_embedding_model(environ: dict[str, str]) -> str | None:
    """Use the bundled MiniLM when no model is named and it is installed; returns the path chosen.

    The production default (BAAI/bge-small-en-v1.5) needs a model hub, which a fresh
    development machine may not reach; an explicit VICTOR_EMBEDDING_MODEL always wins.
    """
    if environ.get("VICTOR_EMBEDDING_MODEL"):
        return None
    from common.embedding_model import bundled_model_path

    path = bundled_model_path()
    if path is None:
        return None
    environ["VICTOR_EMBEDDING_MODEL"] = path
    environ.setdefault("HF_HUB_OFFLINE", "1")
    print(
        "embeddings: VICTOR_EMBEDDING_MODEL is unset; using the bundled all-MiniLM-L6-v2 "
        "(set it to use another model, e.g. BAAI/bge-small-en-v1.5)",
        flush=True,
    )
    return path


def parse_only(value: str | None) -> list[str]:
    if not value:
        return list(PORTS)
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in PORTS]
    if unknown or not names:
        named = ", ".join(unknown) if unknown else repr(value)
        fail(f"--only: unknown name {named}; choose from {', '.join(PORTS)}")
    return names


def status_table(
    plan: DevPlan, supervisor: Supervisor, services: Sequence[ServiceInfo], dead_letters_up: bool = False
) -> str:
    """The table `victor dev` prints once the processes are up: name, URL, state."""
    rows = [("NAME", "URL", "STATE")]
    for name in PORTS:
        if name in supervisor.processes:
            rows.append((name, plan.urls[name], supervisor.processes[name].state))
        elif name in plan.skipped:
            rows.append((name, "-", f"skipped: {plan.skipped[name]}"))
    if plan.dead_letter_port is not None:
        state = "ready (in victor dev)" if dead_letters_up else "not listening"
        rows.append(("dead-letters", f"http://127.0.0.1:{plan.dead_letter_port}", state))
    rows.extend((service.name, service.url, service.state) for service in services)
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)


# ---------------------------------------------------------------- victor dev


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
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
    environ.setdefault("LANCEDB_URI", str(data_dir / "lancedb"))
    choose_dev_embedding_model(environ)
    services = DevServices(data_dir, environ)
    # Until the event loop takes over the signals, SIGTERM unwinds like Ctrl-C so cleanup still runs.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            services.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            fail(f"cannot start the dev services: {first_line}; see the logs under {data_dir}", 1)
        environ.update(services.env())
        if services.applied:
            print("migrations applied: " + ", ".join(services.applied), flush=True)
        plan = plan_processes(selected, args.port_base, environ)
        return asyncio.run(_supervise(plan, services, args))
    finally:
        services.stop()
        signal.signal(signal.SIGTERM, previous)


async def _supervise(plan: DevPlan, services: DevServices, args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    supervisor = Supervisor(plan.specs, backoff=Backoff(cap=args.max_backoff), grace=args.grace)
    pings: list[asyncio.Task[None]] = []
    http = httpx.AsyncClient()
    dead_letters = _dead_letter_server(plan.dead_letter_port, supervisor)
    dead_letter_task = (
        asyncio.create_task(_serve_dead_letters(dead_letters, supervisor)) if dead_letters else None
    )
    try:
        await supervisor.start()
        ready = asyncio.create_task(supervisor.wait_ready(args.ready_timeout))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait((ready, stopped), return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not stop.is_set():
            print(
                "victor dev is running; Ctrl-C stops everything\n"
                + status_table(
                    plan, supervisor, services.describe(), dead_letters is not None and dead_letters.started
                ),
                flush=True,
            )
            supervisor.announce_ready = True
            pings = _start_pings(plan, args, http)
            await stopped
        print("victor dev: stopping", flush=True)
    finally:
        for task in pings:
            task.cancel()
        await asyncio.gather(*pings, return_exceptions=True)
        await supervisor.stop()
        if dead_letters is not None and dead_letter_task is not None:
            dead_letters.should_exit = True
            await asyncio.gather(dead_letter_task, return_exceptions=True)
        await http.aclose()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("victor dev: stopped", flush=True)
    return 0


class _InProcessServer(uvicorn.Server):
    """A server inside `victor dev`, which owns SIGINT/SIGTERM: it must not capture them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _dead_letter_server(port: int | None, supervisor: Supervisor) -> uvicorn.Server | None:
    if port is None:
        return None
    supervisor.widen("dead-letters")
    display = DeadLetterDisplay(lambda line: supervisor.say("dead-letters", line))
    config = uvicorn.Config(display, host="127.0.0.1", port=port, log_config=None, access_log=False)
    return _InProcessServer(config)


async def _serve_dead_letters(server: uvicorn.Server, supervisor: Supervisor) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot bind; victor dev carries on without it
        supervisor.say(
            "dead-letters", f"cannot listen on port {server.config.port}; dead letters are dropped"
        )


def _start_pings(
    plan: DevPlan, args: argparse.Namespace, http: httpx.AsyncClient
) -> list[asyncio.Task[None]]:
    """The knative/ PingSources, replayed against the local broker."""
    if args.ping_interval == 0 or plan.broker_url is None:
        return []
    path = Path(os.environ.get("VICTOR_TRIGGERS_PATH") or DEFAULT_TRIGGERS_PATH)
    if not path.exists():
        return []
    namespace = os.environ.get("VICTOR_BROKER_NAMESPACE") or "victor"
    schedules = load_ping_schedules(path, namespace=namespace, interval=args.ping_interval)
    for schedule in schedules:
        print(f"ping: {schedule.name} every {schedule.interval:g}s to the broker", flush=True)
    return [asyncio.create_task(ping_forever(s, plan.broker_url, http)) for s in schedules]


# ---------------------------------------------------------------- victor send


def parse_extensions(pairs: Sequence[str]) -> dict[str, str]:
    extensions = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"--extension expects NAME=VALUE, got {pair!r}")
        extensions[name] = value
    return extensions


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
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
    target = args.to or settings.broker_url or DEFAULT_BROKER_URL
    try:
        reply = asyncio.run(_send(target, event, args.timeout))
    except DeliveryError as exc:
        if exc.status == 0:
            fail(f"cannot reach {target}: {type(exc.__cause__).__name__}", 1)
        fail(f"{target} did not accept the event: {' '.join(str(exc).split())}", 1)
    if reply is None:
        print(f"accepted by {target} (no reply event)")
    else:
        print(to_structured(reply)[1].decode("utf-8"))
    return 0


async def _send(target: str, event: Any, timeout: float) -> Any:
    async with httpx.AsyncClient() as http:
        return await send_event(http, target, event, timeout=timeout)


# ---------------------------------------------------------------- registration


def register(commands: Any) -> None:
    dev = commands.add_parser(
        "dev",
        help="run the broker and every function locally",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    dev.add_argument("--only", help="comma-separated subset: broker,chat,tools,embeddings,health")
    dev.add_argument("--port-base", type=int, default=8000, help="broker port; functions follow (8000)")
    dev.add_argument("--data-dir", default=".victor", help="embedded data and LanceDB (./.victor)")
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

    send = commands.add_parser("send", help="send a CloudEvent to the broker (or --to a URL)")
    send.add_argument("type", help="event type, e.g. dev.knative.sources.ping")
    send.add_argument("--data", help="event data as JSON")
    send.add_argument("--source", default="/victor/cli", help="event source (/victor/cli)")
    send.add_argument("--to", help="target URL (default: VICTOR_BROKER_URL or the local broker)")
    send.add_argument("--id", help="event id (default: a new UUID)")
    send.add_argument("--subject", help="event subject")
    send.add_argument("--extension", action="append", default=[], metavar="NAME=VALUE")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    send.set_defaults(run=cmd_send)
