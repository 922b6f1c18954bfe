"""How `victor dev` runs the system: the process plan, the supervision loop, pings and dead letters.

Every process is a `victor serve NAME` on a fixed local port (broker 8000,
chat 8001, tools 8002, embeddings 8003, health 8004, shifted by the port
base) and gets the URLs of the others, so the broker's Trigger subscribers
resolve to these ports. The dead-letter display runs inside `victor dev`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from common.settings import FUNCTION_NAMES
from eventing.broker.settings import default_triggers_path
from eventing.dead_letters import SERVICE_NAME as DEAD_LETTER_SERVICE
from eventing.dead_letters import DeadLetterDisplay
from eventing.dev.ping import load_ping_schedules, ping_forever
from eventing.dev.ports import BROKER_PATH, DEAD_LETTER_OFFSET, PORTS
from eventing.dev.stores import DevServices, ServiceInfo
from eventing.dev.supervisor import Backoff, ProcessSpec, Supervisor


@dataclass(frozen=True)
class DevPlan:
    """The processes `victor dev` runs and every local URL."""

    specs: list[ProcessSpec]
    urls: dict[str, str] = field(default_factory=dict)
    # The shared event token of this run (None when the user turned event authentication off).
    event_token: str | None = None

    dead_letter_port: int | None = None

    @property
    def broker_url(self) -> str | None:
        return self.urls.get("broker")


def plan_processes(
    selected: Sequence[str],
    port_base: int,
    environ: Mapping[str, str],
    *,
    python: str = sys.executable,
) -> DevPlan:
    """One `victor serve` process per selected name, in port order, with its environment."""
    running = [name for name in PORTS if name in selected]
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
    # Delivered events carry a token made for this run, unless the user chose otherwise.
    shared.setdefault("VICTOR_EVENT_AUTH", "token")
    if shared["VICTOR_EVENT_AUTH"] == "token" and not shared.get("VICTOR_EVENT_TOKEN"):
        shared["VICTOR_EVENT_TOKEN"] = secrets.token_urlsafe(32)
    event_token = shared.get("VICTOR_EVENT_TOKEN") if shared["VICTOR_EVENT_AUTH"] == "token" else None
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
    return DevPlan(specs=specs, urls=urls, dead_letter_port=dead_letter_port, event_token=event_token)


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


def status_table(
    plan: DevPlan, supervisor: Supervisor, services: Sequence[ServiceInfo], dead_letters_up: bool = False
) -> str:
    """The table `victor dev` prints once the processes are up: name, URL, state."""
    rows = [("NAME", "URL", "STATE")]
    for name in PORTS:
        if name in supervisor.processes:
            rows.append((name, plan.urls[name], supervisor.processes[name].state))
    if plan.dead_letter_port is not None:
        state = "ready (in victor dev)" if dead_letters_up else "not listening"
        rows.append(("dead-letters", f"http://127.0.0.1:{plan.dead_letter_port}", state))
    rows.extend((service.name, service.url, service.state) for service in services)
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)


async def supervise(plan: DevPlan, services: DevServices, args: argparse.Namespace) -> int:
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
        # A child that exits 2 has a configuration error; restarting it would only repeat it.
        misconfigured = asyncio.create_task(supervisor.misconfigured.wait())
        await asyncio.wait((ready, stopped, misconfigured), return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not stop.is_set() and not supervisor.misconfigured.is_set():
            print(
                "victor dev is running; Ctrl-C stops everything\n"
                + status_table(
                    plan, supervisor, services.describe(), dead_letters is not None and dead_letters.started
                ),
                flush=True,
            )
            supervisor.announce_ready = True
            pings = _start_pings(plan, args, http)
            await asyncio.wait((stopped, misconfigured), return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        misconfigured.cancel()
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
    if supervisor.failure is not None:
        name, line = supervisor.failure
        print(
            f"victor dev: {name} has a configuration error (exit status 2): {line}",
            file=sys.stderr,
            flush=True,
        )
        return 2
    print("victor dev: stopped", flush=True)
    return 0


def ports_in_use(plan: DevPlan) -> list[str]:
    """`PORT (name)` for each port the plan needs that another process already holds on loopback."""
    wanted = [(int(spec.env["PORT"]), spec.name) for spec in plan.specs if "PORT" in spec.env]
    if plan.dead_letter_port is not None:
        wanted.append((plan.dead_letter_port, "dead-letters"))
    taken = []
    for port, name in wanted:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                taken.append(f"{port} ({name})")
    return taken


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
    path = Path(os.environ.get("VICTOR_TRIGGERS_PATH") or default_triggers_path())
    if not path.exists():
        return []
    namespace = os.environ.get("VICTOR_BROKER_NAMESPACE") or "victor"
    schedules = load_ping_schedules(path, namespace=namespace, interval=args.ping_interval)
    for schedule in schedules:
        print(f"ping: {schedule.name} every {schedule.interval:g}s to the broker", flush=True)
    credentials = {"authorization": f"Bearer {plan.event_token}"} if plan.event_token else {}
    return [asyncio.create_task(ping_forever(s, plan.broker_url, http, credentials)) for s in schedules]
