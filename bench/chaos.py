"""Chaos: agent turns through the broker under `victor dev` while its processes are SIGKILLed.

`victor dev` runs the broker, chat, tools, embeddings and health against
PostgreSQL and Redis that this benchmark starts (embedded), with the LLM
replaced by a scripted Anthropic server inside this process. Each turn is a
`ai.victor.chat.requested` event published to the broker ingress (its own
conversation and event id, republished with the same id until the ingress
accepts it). The scripted model answers by where a turn is, not from a queue:

  step 0: run_command (python3 appends "<turn>:0" to runs.log) and write_file;
  step 1: run_command (appends "<turn>:1");
  step 2: the answer "turn <n> done".

While turns run, a random process (broker, chat, tools, embeddings) gets
SIGKILL every few seconds (`victor dev` restarts it), and Redis is stopped and
started again once, halfway. Then the kills stop and every turn gets time to
finish. Counted:

- completed: the chat request stored as completed with the scripted answer;
  lost: every other turn (failed, or still unfinished at the end);
- duplicate_llm_calls: model calls beyond the first for one (turn, step);
- duplicate_tool_runs: lines of runs.log beyond the first for one (turn, step),
  i.e. a write that really ran twice;
- kills: SIGKILLs sent.

The aim is every turn completed, 0 lost, 0 duplicated effects.
`--quick` (BENCH_QUICK=1): at least 20 turns and 40 s of kills every 4 s;
the full run: 300 s of kills every 3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import uvicorn

from bench.support import (
    PYTHON,
    ServerProcess,
    free_port,
    free_port_base,
    print_header,
    print_json,
    quick,
    scratch_dir,
    table,
    wait_until,
)
from common.cloudevents import new_event
from eventing.client import DeliveryError, publish
from eventing.dev.embedded import EmbeddedRedis
from eventing.dev.ports import BROKER_PATH, PORTS
from eventing.dev.stores import configured_or_embedded
from eventing.schemas.chat import CHAT_REQUESTED, CONVERSATION_ID, ChatRequested
from tests.support.fake_anthropic import FakeAnthropic, Reply, text, tool_use

TARGETS = ("broker", "chat", "tools", "embeddings")
TURN = re.compile(r"chaos turn (\d+)")
RUNS_LOG = "runs.log"
# How victor dev's dead-letter display reports an event the broker gave up on.
DEAD_LETTER = re.compile(r"dead letter (\S+) id=\S+ source=\S+: \S+ answered (\d+|\?)")
APPEND = "open('runs.log', 'a').write('{mark}\\n')"


@dataclass(frozen=True)
class Plan:
    """How long and how hard: the chaos phase, the kill interval, the turns, the time to finish."""

    chaos_seconds: float
    kill_every: float
    min_turns: int
    in_flight: int
    finish_seconds: float
    # A turn holds one of the `in_flight` slots at most this long, so a stuck turn does not stop the load.
    slot_seconds: float = 20.0


QUICK = Plan(chaos_seconds=40, kill_every=4, min_turns=20, in_flight=4, finish_seconds=60)
FULL = Plan(chaos_seconds=300, kill_every=3, min_turns=100, in_flight=6, finish_seconds=180)


@dataclass
class ScriptedAgent(FakeAnthropic):
    """The model: answers each (turn, step) the same way however often it is asked, and counts the asks."""

    calls: Counter[tuple[int, int]] = field(default_factory=Counter)
    # When each (turn, step) was first asked, and when it was asked again (monotonic seconds).
    first_asked: dict[tuple[int, int], float] = field(default_factory=dict)
    asked_again: list[tuple[tuple[int, int], float]] = field(default_factory=list)
    tool_errors: int = 0

    async def answer(self, send: Any, request: Any, item: Any) -> None:
        self.requests.clear()  # the record is for tests; a long run must not grow it
        messages = request.body.get("messages", [])
        turn, step = position(messages)
        self.calls[(turn, step)] += 1
        if self.calls[(turn, step)] == 1:
            self.first_asked[(turn, step)] = time.monotonic()
        else:
            self.asked_again.append(((turn, step), time.monotonic()))
        if self.calls[(turn, step)] == 1 and messages:
            self.tool_errors += sum(
                1
                for block in _blocks(messages[-1])
                if block.get("type") == "tool_result" and block.get("is_error")
            )
        await super().answer(send, request, scripted_reply(turn, step))


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or [] if isinstance(block, dict)]


def position(messages: list[dict[str, Any]]) -> tuple[int, int]:
    """(turn number from the first user message, model answers so far in this request)."""
    first = " ".join(str(b.get("text", "")) for b in _blocks(messages[0])) if messages else ""
    match = TURN.search(first)
    turn = int(match.group(1)) if match else -1
    return turn, sum(1 for message in messages if message.get("role") == "assistant")


def scripted_reply(turn: int, step: int) -> Reply:
    def append(step: int) -> dict[str, Any]:
        argv = ["python3", "-c", APPEND.format(mark=f"{turn}:{step}")]
        return tool_use(f"toolu_{turn}_{step}_run", "run_command", {"argv": argv})

    if step == 0:
        write = {"path": f"turn-{turn}.txt", "content": f"turn {turn} was here\n"}
        return Reply([append(0), tool_use(f"toolu_{turn}_0_write", "write_file", write)])
    if step == 1:
        return Reply([append(1)])
    return Reply([text(f"turn {turn} done")])


@dataclass
class Chaos:
    """What happened: the turns issued, the kills sent, the Redis restarts."""

    conversations: dict[int, str] = field(default_factory=dict)
    kills: Counter[str] = field(default_factory=Counter)
    # (what was killed or restarted, when), to tell what came between two asks of one step.
    events_at: list[tuple[str, float]] = field(default_factory=list)
    redis_restarts: int = 0
    publish_retries: int = 0


class ChaosRun:
    def __init__(self, plan: Plan, dev: ServerProcess, redis: EmbeddedRedis, database_url: str, base: int):
        self.plan = plan
        self.dev = dev
        self.redis = redis
        self.database_url = database_url
        self.broker_url = f"http://127.0.0.1:{base + PORTS['broker']}{BROKER_PATH}"
        self.chaos = Chaos()
        self.run_id = f"{int(time.time())}-{os.getpid()}"
        self.random = random.Random(7)

    # ------------------------------------------------------------ turns

    async def turn(self, number: int, http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
        conversation = f"chaos-{self.run_id}-{number}"
        self.chaos.conversations[number] = conversation
        payload = ChatRequested(
            message=f"chaos turn {number}: work, then answer", conversation_id=conversation
        )
        event = new_event(
            CHAT_REQUESTED,
            "/bench/chaos",
            payload,
            id=conversation,
            subject=conversation,
            extensions={CONVERSATION_ID: conversation},
        )
        stop_at = time.monotonic() + self.plan.slot_seconds
        while True:  # the same event id each time: a second acceptance is one turn, not two
            try:
                await publish(http, self.broker_url, event)
                break
            except (DeliveryError, httpx.HTTPError):
                self.chaos.publish_retries += 1
                await asyncio.sleep(0.5)
        while time.monotonic() < stop_at:
            if await settled(pool, conversation):
                return
            await asyncio.sleep(0.5)

    async def turns(self, http: httpx.AsyncClient, pool: asyncpg.Pool, chaos_over: asyncio.Event) -> None:
        slots = asyncio.Semaphore(self.plan.in_flight)
        running: set[asyncio.Task[None]] = set()
        number = 0
        while not chaos_over.is_set() or number < self.plan.min_turns:
            await slots.acquire()
            number += 1
            task = asyncio.create_task(self.turn(number, http, pool))
            running.add(task)
            task.add_done_callback(lambda t: (running.discard(t), slots.release()))
        await asyncio.gather(*running)

    async def finish(self, pool: asyncpg.Pool) -> None:
        """Give every turn not settled yet up to `finish_seconds` to end, now that nothing is killed."""
        deadline = time.monotonic() + self.plan.finish_seconds
        waiting = list(self.chaos.conversations.values())
        while waiting and time.monotonic() < deadline:
            waiting = [c for c in waiting if not await settled(pool, c)]
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------ kills

    def children(self) -> dict[str, psutil.Process]:
        """victor dev's `victor serve NAME` processes now running, by name."""
        assert self.dev.process is not None
        found = {}
        for child in psutil.Process(self.dev.process.pid).children():
            with contextlib.suppress(psutil.Error):
                argv = child.cmdline()
                if "serve" in argv and argv.index("serve") + 1 < len(argv):
                    found[argv[argv.index("serve") + 1]] = child
        return found

    async def kill_loop(self, chaos_over: asyncio.Event) -> None:
        started = time.monotonic()
        restarted_redis = False
        while time.monotonic() - started < self.plan.chaos_seconds:
            await asyncio.sleep(self.plan.kill_every)
            issued = len(self.chaos.conversations)
            print(f"{time.monotonic() - started:.0f}s: {issued} turns issued", flush=True)
            if not restarted_redis and time.monotonic() - started > self.plan.chaos_seconds / 2:
                await asyncio.to_thread(self.restart_redis)
                restarted_redis = True
                continue
            running = self.children()
            choices = [name for name in TARGETS if name in running]
            if not choices:
                continue
            name = self.random.choice(choices)
            with contextlib.suppress(psutil.Error):
                running[name].send_signal(signal.SIGKILL)
                self.chaos.kills[name] += 1
                self.chaos.events_at.append((f"{name} killed", time.monotonic()))
        print("kills over; waiting for the turns in flight", flush=True)
        chaos_over.set()

    def restart_redis(self) -> None:
        self.chaos.events_at.append(("Redis restarted", time.monotonic()))
        self.redis.stop()
        time.sleep(1.0)
        self.redis.start()
        self.chaos.redis_restarts += 1


async def settled(pool: asyncpg.Pool, conversation: str) -> bool:
    status = await pool.fetchval(
        "SELECT status FROM chat_requests WHERE conversation_id = $1 ORDER BY status LIMIT 1", conversation
    )
    return status in ("completed", "failed")


async def outcomes(pool: asyncpg.Pool, conversations: dict[int, str]) -> Counter[str]:
    rows = await pool.fetch(
        "SELECT conversation_id, status, answer FROM chat_requests WHERE conversation_id = ANY($1)",
        list(conversations.values()),
    )
    by_conversation = {row["conversation_id"]: row for row in rows}
    counted: Counter[str] = Counter()
    for number, conversation in conversations.items():
        row = by_conversation.get(conversation)
        if row is None:
            counted["never_started"] += 1
        elif row["status"] == "completed" and row["answer"] == f"turn {number} done":
            counted["completed"] += 1
        else:
            counted[str(row["status"])] += 1
    return counted


async def where_stuck(pool: asyncpg.Pool, conversations: dict[int, str]) -> dict[str, int]:
    """For the turns still running: the phase they wait in, and the event claims left 'running'."""
    rows = await pool.fetch(
        "SELECT c.phase, c.turn, c.claimed_at IS NOT NULL AS held FROM chat_conversations c"
        " JOIN chat_requests r ON r.conversation_id = c.id AND r.status = 'running'"
        " WHERE c.id = ANY($1)",
        list(conversations.values()),
    )
    found: Counter[str] = Counter(
        f"phase {row['phase']} at step {row['turn']}{' (LLM call claimed)' if row['held'] else ''}"
        for row in rows
    )
    claims = await pool.fetch(
        "SELECT function, count(*) AS n FROM processed_events WHERE state = 'running' GROUP BY function"
    )
    found.update({f"event claims left running in {row['function']}": row["n"] for row in claims})
    return dict(found)


def between(events: list[tuple[str, float]], first: float, last: float) -> str:
    """What was killed or restarted from `first` to `last` (monotonic seconds), or "nothing"."""
    return ", ".join(sorted({what for what, at in events if first <= at <= last})) or "nothing"


def duplicates(counts: Counter[Any]) -> int:
    return sum(count - 1 for count in counts.values() if count > 1)


def run(plan: Plan, scratch: Path) -> dict[str, Any]:
    """Redis of its own (so it can be restarted), PostgreSQL (configured or embedded), then the run."""
    redis = EmbeddedRedis(scratch / "redis")
    redis.start()
    try:
        with configured_or_embedded(scratch / "stores", {**os.environ, "REDIS_URL": redis.url}) as (db, _):
            return asyncio.run(_run_with_stores(plan, scratch, redis, db))
    finally:
        redis.stop()


async def _run_with_stores(
    plan: Plan, scratch: Path, redis: EmbeddedRedis, database_url: str
) -> dict[str, Any]:
    llm = ScriptedAgent(default=Reply([text("unused")]))
    llm_port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            llm, host="127.0.0.1", port=llm_port, log_config=None, access_log=False, lifespan="off"
        )
    )
    serving = asyncio.create_task(server.serve())
    workspace = scratch / "workspace"
    workspace.mkdir()
    base = free_port_base()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "ANTHROPIC_", "OPENAI_"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis.url,
        LANCEDB_URI=str(scratch / "lancedb"),
        WORKSPACE_DIR=str(workspace),
        ANTHROPIC_API_KEY="bench-key",
        ANTHROPIC_BASE_URL=f"http://127.0.0.1:{llm_port}",
        VICTOR_ENABLE_RUN_COMMAND="true",
        VICTOR_EVENT_AUTH="none",
        VICTOR_LOG_LEVEL="WARNING",
    )
    argv = [PYTHON, "-m", "eventing.cli", "dev", "--port-base", str(base), "--data-dir", str(scratch / "dev")]
    argv += ["--only", ",".join(TARGETS)]
    argv += ["--ping-interval", "0", "--max-backoff", "2", "--grace", "2", "--ready-timeout", "300"]
    dev = ServerProcess(argv, env, base + PORTS["chat"], scratch)
    dev.start()
    try:
        await asyncio.to_thread(
            wait_until, lambda: "victor dev is running" in dev.log_path.read_text(errors="replace"), 300
        )
        print(f"victor dev ready after {time.perf_counter() - dev.started_at:.0f}s; chaos begins", flush=True)
        chaos = ChaosRun(plan, dev, redis, database_url, base)
        started = time.monotonic()
        chaos_over = asyncio.Event()
        async with (
            httpx.AsyncClient(timeout=10) as http,
            asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool,
        ):
            killing = asyncio.create_task(chaos.kill_loop(chaos_over))
            await chaos.turns(http, pool, chaos_over)
            await killing
            await chaos.finish(pool)
            print(f"done after {time.monotonic() - started:.0f}s of turns", flush=True)
            counted = await outcomes(pool, chaos.chaos.conversations)
            stuck = await where_stuck(pool, chaos.chaos.conversations)
        elapsed = time.monotonic() - started
    finally:
        dev.stop()
        server.should_exit = True
        await serving
    dev_log = dev.log_path.read_text(errors="replace")
    dead_letters = Counter(f"{kind} ({code})" for kind, code in DEAD_LETTER.findall(dev_log))
    log = workspace / RUNS_LOG
    runs = Counter(log.read_text().split()) if log.exists() else Counter()
    turns = len(chaos.chaos.conversations)
    return {
        "turns": turns,
        "completed": counted["completed"],
        "lost": turns - counted["completed"],
        "duplicate_llm_calls": duplicates(llm.calls),
        # Of those, what was killed or restarted between the first ask of the step and this one.
        "duplicate_llm_calls_after": dict(
            Counter(
                between(chaos.chaos.events_at, llm.first_asked[key], asked) for key, asked in llm.asked_again
            )
        ),
        "duplicate_tool_runs": duplicates(runs),
        "kills": sum(chaos.chaos.kills.values()),
        "kills_by_process": dict(chaos.chaos.kills),
        # Totals, so the duplicates above are read against what ran: 3 model calls, 2 appends per turn.
        "llm_calls": sum(llm.calls.values()),
        "tool_runs": sum(runs.values()),
        "files_written": len(list(workspace.glob("turn-*.txt"))),
        "redis_restarts": chaos.chaos.redis_restarts,
        "failed": counted["failed"],
        "unfinished": counted["running"],
        "never_started": counted["never_started"],
        "tool_errors_seen_by_model": llm.tool_errors,
        "publish_retries": chaos.chaos.publish_retries,
        "stuck": stuck,
        "dead_letters": sum(dead_letters.values()),
        "dead_letters_by_type": dict(dead_letters),
        "seconds": round(elapsed, 1),
    }


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: victor dev and the stores stop


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    plan = QUICK if quick() else FULL
    print_header("Chaos: agent turns through the broker while victor dev's processes are killed")
    with scratch_dir("victor-bench-chaos-") as scratch:
        figures = run(plan, scratch)
    print(
        table(
            ["turns", "completed", "lost", "dup LLM calls", "dup tool runs", "kills", "Redis restarts"],
            [
                [
                    figures["turns"],
                    figures["completed"],
                    figures["lost"],
                    figures["duplicate_llm_calls"],
                    figures["duplicate_tool_runs"],
                    figures["kills"],
                    figures["redis_restarts"],
                ]
            ],
        )
    )
    print(
        f"\nkills by process: {figures['kills_by_process']}; lost = failed {figures['failed']}"
        f" + unfinished {figures['unfinished']} + never started {figures['never_started']};"
        f" tool errors the model saw: {figures['tool_errors_seen_by_model']};"
        f" {figures['llm_calls']} model calls, {figures['tool_runs']} logged tool runs,"
        f" {figures['files_written']} files written"
    )
    if figures["stuck"]:
        print(f"where the unfinished turns wait: {figures['stuck']}")
    if figures["dead_letters"]:
        print(f"events the broker dead-lettered: {figures['dead_letters_by_type']}")
    print("aim: every turn completes, 0 lost, 0 duplicated LLM calls or tool runs")
    print_json("chaos", figures)


if __name__ == "__main__":
    main()
