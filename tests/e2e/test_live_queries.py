"""Every dashboard panel and alert, evaluated by a real Prometheus against live scrapes of every process.

`victor dev` runs the whole system (broker, chat on the fake Anthropic server, tools,
embeddings with the bundled model, health, the dead-letter sink) and gets mixed traffic:
an agent turn with a tool call through the broker, a streamed chat, direct tool runs (one
answered from the cache), embeddings, indexing, search, the system status, a 404 and pings.
Prometheus (Debian's `prometheus` package; skipped without it) scrapes all six every second
with the repository's alert rules loaded. Then every panel query must parse and return data,
except the few listed below whose metric only moves on an unhealthy or differently configured
system; every alert expression must parse and its rule evaluate without error; and none may be
pending or firing on this healthy traffic.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from eventing.dev.embedded import free_port
from tests.contract.test_dashboards import alert_rules, dashboard_queries
from tests.e2e.test_victor_dev import free_port_range, kill_leftovers, start_victor_dev, wait_for_line
from tests.support.chat import anthropic_env
from tests.support.fake_anthropic import FakeAnthropic, Reply, text, tool_use
from tests.support.servers import running

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "config"
PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (apt-get install prometheus)"),
]
# Scraped processes: victor dev's ports from the base, in this order.
SERVICES = ("broker", "chat", "tools", "embeddings", "health", "dead-letters")
# Panels whose series exist only when something is wrong or configured otherwise; each says why.
NO_DATA_ON_A_HEALTHY_DEV_SYSTEM = {
    "sum by (function) (rate(victor_rate_limited_total[5m]))": "no VICTOR_RATE_LIMIT: nothing is limited",
    "sum by (function) (rate(victor_rate_limit_unchecked_total[5m]))": "limits skipped while Redis is down",
    "sum by (provider, model) (rate(victor_llm_unpriced_calls_total[5m]))": "the model used has a price",
    "victor_memory_limit_bytes": "exported only in a container with a memory limit",
    "process_resident_memory_bytes / victor_memory_limit_bytes": "needs the memory limit (a container)",
}


def prometheus_config(base: int) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(CONFIG / "prometheus" / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "victor",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{base + offset}"], "labels": {"service": name}}
                    for offset, name in enumerate(SERVICES)
                ],
            }
        ],
    }


async def query(http: httpx.AsyncClient, expression: str) -> dict[str, Any]:
    response = await http.get("/api/v1/query", params={"query": expression})
    body: dict[str, Any] = response.json()
    return body


async def traffic(base: int, llm: FakeAnthropic) -> None:
    """A healthy mix: every function does its real work at least once."""
    url = {name: f"http://127.0.0.1:{base + offset}" for offset, name in enumerate(SERVICES)}
    async with httpx.AsyncClient(timeout=120) as http:
        llm.push(
            Reply([text("Reading it."), tool_use("toolu_1", "read_file", {"path": "notes.txt"})]),
            Reply([text("The notes say hello.")]),
            Reply([text("A streamed answer.")]),
        )
        turn = await http.post(f"{url['chat']}/v1/chat", json={"message": "What do the notes say?"})
        assert turn.status_code == 200, turn.text
        streamed = await http.post(f"{url['chat']}/v1/chat", json={"message": "Stream it", "stream": True})
        assert streamed.status_code == 200
        for _ in range(2):  # the second run is answered from the result cache
            ran = await http.post(f"{url['tools']}/v1/tools/read_file", json={"path": "notes.txt"})
            assert ran.status_code == 200, ran.text
        embedded = await http.post(f"{url['embeddings']}/v1/embeddings", json={"input": ["hello notes"]})
        assert embedded.status_code == 200, embedded.text
        indexed = await http.post(f"{url['embeddings']}/v1/index", json={"path": ".", "collection": "live"})
        assert indexed.status_code == 200, indexed.text
        found = await http.post(
            f"{url['embeddings']}/v1/search", json={"query": "notes", "collection": "live"}
        )
        assert found.status_code == 200, found.text
        assert (await http.get(f"{url['health']}/v1/status")).status_code == 200
        assert (await http.get(f"{url['chat']}/v1/nowhere")).status_code == 404


async def settled(http: httpx.AsyncClient, expression: str, limit: float = 60.0) -> dict[str, Any]:
    """The query's answer once it has data (or the last answer after `limit` seconds of scrapes)."""
    answer = await query(http, expression)
    for _ in range(int(limit / 0.5)):
        if answer.get("status") != "success" or answer["data"]["result"]:
            return answer
        await asyncio.sleep(0.5)
        answer = await query(http, expression)
    return answer


async def test_every_panel_and_alert_evaluates_against_live_scrapes_of_every_process(
    services, tmp_path: Path
) -> None:
    assert PROMETHEUS is not None
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("hello from the notes\n")
    base = free_port_range(len(SERVICES))
    llm = FakeAnthropic()
    async with running(llm) as llm_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OTEL_"))}
        env.update(
            DATABASE_URL=services.database_url,
            REDIS_URL=services.redis_url,
            WORKSPACE_DIR=str(workspace),
            LANCEDB_URI=str(tmp_path / "lancedb"),
            **anthropic_env(llm_url),
        )
        log = tmp_path / "dev.log"
        dev = await start_victor_dev(
            log,
            env,
            *("--port-base", str(base), "--data-dir", str(tmp_path / "data"), "--ping-interval", "1"),
        )
        started: list[int] = []
        prometheus: subprocess.Popen[bytes] | None = None
        try:
            assert await wait_for_line(log, "victor dev is running", dev, limit=180), log.read_text()
            started = [p.pid for p in psutil.Process(dev.pid).children(recursive=True)]
            config = tmp_path / "prometheus.yml"
            config.write_text(yaml.safe_dump(prometheus_config(base)))
            port = free_port()
            with (tmp_path / "prometheus.log").open("wb") as output:
                prometheus = subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                    ],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            await traffic(base, llm)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                up = await settled(http, "count(up == 1) == 6")
                assert up["data"]["result"], (await query(http, "up"))["data"]
                no_data = {}
                for where, expression in dashboard_queries():
                    answer = await settled(
                        http, expression, limit=1.0 if expression in NO_DATA_ON_A_HEALTHY_DEV_SYSTEM else 60.0
                    )
                    assert answer["status"] == "success", (where, expression, answer)
                    if not answer["data"]["result"]:
                        no_data[expression] = where
                assert set(no_data) == set(NO_DATA_ON_A_HEALTHY_DEV_SYSTEM), no_data
                for rule in alert_rules():
                    answer = await query(http, rule["expr"])
                    assert answer["status"] == "success", (rule["alert"], answer)
                rules = (await http.get("/api/v1/rules")).json()["data"]["groups"]
                evaluated = {rule["name"]: rule for group in rules for rule in group["rules"]}
                assert set(evaluated) == {rule["alert"] for rule in alert_rules()}
                assert {name: rule["health"] for name, rule in evaluated.items()} == dict.fromkeys(
                    evaluated, "ok"
                ), evaluated
                alerts = (await http.get("/api/v1/alerts")).json()["data"]["alerts"]
                assert alerts == []
        finally:
            if prometheus is not None:
                prometheus.terminate()
                prometheus.wait(timeout=30)
            await kill_leftovers(dev, started)
