"""scripts/smoke_test.sh against a running `victor dev`: passes when all is up, fails in one line when not.

The whole system runs (broker, chat, tools, embeddings with the bundled model, health) on
the configured PostgreSQL and Redis, and the script gets only the VICTOR_*_URL settings and
the run's event token a user would give it. Every line the processes print under that traffic
(and an index run) is a JSON log record. Then the tools process is frozen (SIGSTOP) so it
accepts connections but never answers, as a wedged pod would: the script must stop at tools
with one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.test_victor_dev import free_port_range, kill_leftovers, start_victor_dev, wait_for_line

ROOT = Path(__file__).parents[2]
SMOKE = ROOT / "scripts" / "smoke_test.sh"
pytestmark = pytest.mark.slow


def not_json(log: Path) -> list[str]:
    """Lines the functions and the broker printed through victor dev (`name | line`) that are not JSON."""
    bad = []
    for line in log.read_text(errors="replace").splitlines():
        name, bar, payload = line.partition(" | ")
        if not bar or " " in name.strip():
            continue  # victor dev's own table and status lines
        try:
            json.loads(payload)
        except ValueError:
            bad.append(line)
    return bad


async def smoke(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        "sh", str(SMOKE), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_smoke_test_passes_against_victor_dev_and_names_a_frozen_function(
    services, tmp_path: Path
) -> None:
    log = tmp_path / "dev.log"
    base = free_port_range(6)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VICTOR_")}
    env.update(
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
        WORKSPACE_DIR=str(tmp_path / "workspace"),
        LANCEDB_URI=str(tmp_path / "lancedb"),
    )
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "notes.txt").write_text("smoke\n")
    dev = await start_victor_dev(
        log, env, *("--port-base", str(base), "--data-dir", str(tmp_path / "data"), "--ping-interval", "0")
    )
    started: list[int] = []
    client = {k: v for k, v in os.environ.items() if not k.startswith("VICTOR_")}
    client.update(
        VICTOR_BROKER_URL=f"http://127.0.0.1:{base}/victor/default",
        VICTOR_CHAT_URL=f"http://127.0.0.1:{base + 1}",
        VICTOR_TOOLS_URL=f"http://127.0.0.1:{base + 2}",
        VICTOR_EMBEDDINGS_URL=f"http://127.0.0.1:{base + 3}",
        VICTOR_HEALTH_URL=f"http://127.0.0.1:{base + 4}",
        VICTOR_SMOKE_TIMEOUT="3",
    )
    try:
        assert await wait_for_line(log, "victor dev is running", dev, limit=180), log.read_text()
        started = [p.pid for p in psutil.Process(dev.pid).children(recursive=True)]
        # The broker ingress takes this run's event token, which victor dev leaves in its data directory.
        client["VICTOR_EVENT_TOKEN"] = (tmp_path / "data" / "event-token").read_text().strip()

        code, out, err = await smoke(client)
        assert (code, err) == (0, ""), out + err
        assert out.splitlines() == [
            "smoke: broker ready, metrics served",
            "smoke: broker accepted an event",
            "smoke: chat ready, metrics served",
            "smoke: tools ready, metrics served",
            "smoke: tools ran list_directory",
            "smoke: embeddings ready, metrics served",
            "smoke: embeddings embedded a text",
            "smoke: health ready, metrics served",
            "smoke: health reported the system status",
            "smoke: OK (5 checked)",
        ]

        # Indexing loads LanceDB, whose warnings once came out as plain text: the logs stay JSON.
        async with httpx.AsyncClient(base_url=client["VICTOR_EMBEDDINGS_URL"], timeout=60) as http:
            indexed = await http.post("/v1/index", json={"path": ".", "collection": "smoke"})
        assert indexed.status_code == 200, indexed.text
        assert not_json(log) == []

        tools = next(p for p in psutil.Process(dev.pid).children() if "tools" in p.cmdline())
        tools.send_signal(signal.SIGSTOP)
        try:
            code, out, err = await smoke(client)
        finally:
            tools.send_signal(signal.SIGCONT)
        assert code == 1
        assert out.splitlines()[-1] == "smoke: chat ready, metrics served"
        assert len(err.splitlines()) == 1, err
        assert err.startswith(
            f"smoke: FAILED tools readiness: GET http://127.0.0.1:{base + 2}/health/ready got no answer: "
        )

        missing = {k: v for k, v in client.items() if k != "VICTOR_HEALTH_URL"}
        code, out, err = await smoke(missing, "--skip", "chat,tools,embeddings,broker")
        assert (code, out) == (1, "")
        assert err == (
            "smoke: FAILED health: VICTOR_HEALTH_URL is not set "
            "(set it to the function's URL, or pass --skip health)\n"
        )
    finally:
        await kill_leftovers(dev, started)
