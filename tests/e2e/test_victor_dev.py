"""End to end through `victor dev`'s real processes: embedded services, broker, health, Triggers.

`victor dev --only broker,health` runs as a user would run it (its own data
directory, embedded PostgreSQL and Redis). The Triggers are the real
knative/base manifests plus one more Trigger that routes
`ai.victor.health.reported` to a subscriber of this test, named by `ref` and
mapped with VICTOR_SUBSCRIBER_URLS. A ping sent with `victor send` must reach
health through the broker, and health's reply must reach that subscriber
through the second Trigger. Then Ctrl-C (SIGINT) must leave no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
import redis

from tests.integration.test_send import victor_send
from tests.support.processes import alive, wait_gone
from tests.support.recorder import EventRecorder
from tests.support.servers import running

ROOT = Path(__file__).parents[2]
MANIFESTS = ROOT / "knative" / "base"
REPORTS_TRIGGER = """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: test-health-reports
spec:
  broker: default
  filter:
    attributes:
      type: ai.victor.health.reported
  subscriber:
    ref:
      apiVersion: v1
      kind: Service
      name: test-reports
"""
pytestmark = pytest.mark.slow


def free_port_range(count: int) -> int:
    """A base port such that `count` consecutive ports are free on loopback right now."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no free range of ports")


async def wait_for_line(log: Path, text: str, process: asyncio.subprocess.Process, limit: float) -> bool:
    for _ in range(int(limit / 0.1)):
        if text in log.read_text(errors="replace"):
            return True
        if process.returncode is not None:
            return False
        await asyncio.sleep(0.1)
    return False


async def start_victor_dev(
    log: Path, env: dict[str, str], *args: str, cwd: Path = ROOT
) -> asyncio.subprocess.Process:
    """`victor dev ARGS` in its own session, as a terminal starts it (in `cwd`); its output goes to `log`."""
    with log.open("wb") as output:
        return await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "eventing.cli", "dev", *args),
            cwd=str(cwd),
            env=env,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )


async def kill_leftovers(dev: asyncio.subprocess.Process, pids: list[int]) -> None:
    """After a test, whatever passed or failed: victor dev and the processes it started are killed."""
    if dev.returncode is None:
        dev.kill()
        await dev.wait()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


def postgres_processes(data_dir: Path) -> list[int]:
    """The embedded postmaster and its backends (pg_ctl detaches them from victor dev)."""
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return []
    postmaster = int(pid_file.read_text().splitlines()[0])
    with contextlib.suppress(psutil.NoSuchProcess):
        return [postmaster, *(p.pid for p in psutil.Process(postmaster).children(recursive=True))]
    return []


async def test_a_ping_reaches_health_through_victor_dev_and_the_report_reaches_a_second_trigger(
    tmp_path: Path,
) -> None:
    triggers = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, triggers)
    (triggers / "test-reports-trigger.yaml").write_text(REPORTS_TRIGGER)
    # Not under pytest's tmp root: a pytest starting elsewhere resets that root to 0700, and
    # the embedded PostgreSQL runs as the unprivileged pgserver user when tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="victor-dev-e2e-"))
    log = tmp_path / "dev.log"
    port_base = free_port_range(6)
    broker_url = f"http://127.0.0.1:{port_base}/victor/default"
    receiver = EventRecorder(status=202)
    async with running(receiver) as sink_url:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "LANCEDB_URI") and not k.startswith("VICTOR_")
        }
        env.update(VICTOR_TRIGGERS_PATH=str(triggers), VICTOR_SUBSCRIBER_URLS=f"test-reports={sink_url}")
        dev = await start_victor_dev(
            log,
            env,
            *("--only", "broker,health", "--port-base", str(port_base)),
            *("--data-dir", str(data_dir), "--ping-interval", "0"),
        )
        started: list[int] = []
        try:
            assert await wait_for_line(log, "victor dev is running", dev, limit=120), log.read_text()
            # The table's rows are indented; the children's relayed lines are not.
            rows = {
                line.split()[0]: line.split(None, 2)[1:]
                for line in log.read_text().splitlines()
                if line.startswith("  ")
            }
            assert rows["broker"] == [broker_url, "ready"]
            assert rows["health"] == [f"http://127.0.0.1:{port_base + 4}", "ready"]
            assert rows["dead-letters"] == [f"http://127.0.0.1:{port_base + 5}", "ready (in victor dev)"]
            assert rows["postgres"][1] == rows["redis"][1] == "embedded"
            assert "chat" not in rows
            # Client commands find these URLs in the data directory's dev.json.
            recorded = json.loads((data_dir / "dev.json").read_text())
            assert (recorded["pid"], recorded["urls"]) == (
                dev.pid,
                {"broker": broker_url, "health": f"http://127.0.0.1:{port_base + 4}"},
            )
            started = [p.pid for p in psutil.Process(dev.pid).children(recursive=True)]
            started += postgres_processes(data_dir)
            # redis, broker, health, and the postmaster at least.
            assert len(started) >= 4

            # Events need this run's token, which victor dev leaves in its data directory.
            token = (data_dir / "event-token").read_text().strip()
            assert len(token) >= 32
            assert (data_dir / "event-token").stat().st_mode & 0o077 == 0
            code, out, err = await victor_send(
                "dev.knative.sources.ping",
                *("--id", "e2e-ping-0", "--source", "/tests/e2e"),
                VICTOR_BROKER_URL=broker_url,
                VICTOR_EVENT_TOKEN="not-this-runs-token",
            )
            assert (code, out) == (1, "")
            assert err.startswith(
                f"victor: {broker_url} did not accept the event: event not accepted: HTTP 401: "
            )
            code, out, err = await victor_send(
                "dev.knative.sources.ping",
                "--data",
                '{"version": 1}',
                "--id",
                "e2e-ping-1",
                "--source",
                "/tests/e2e",
                VICTOR_BROKER_URL=broker_url,
                VICTOR_EVENT_TOKEN=token,
            )
            assert (code, err) == (0, ""), err
            assert out == f"accepted by {broker_url} (no reply event)\n"

            reports = await receiver.wait_for(
                lambda e: e.type == "ai.victor.health.reported" and e.subject == "e2e-ping-1", limit=60
            )
            assert reports, log.read_text()
            report = reports[0]
            assert report.source == "/victor/health"
            assert report.json()["status"] == "ok"
            assert [(c["name"], c["state"]) for c in report.json()["components"]] == [
                ("redis", "up"),
                ("postgres", "up"),
            ]
            assert all(r.path == "/" for r in receiver.requests)

            # A function that dies is started again, and becomes ready again.
            health = next(p for p in psutil.Process(dev.pid).children() if "health" in p.cmdline())
            health.kill()
            assert await wait_for_line(log, "health       | ready after 2 start(s)", dev, limit=60), (
                log.read_text()
            )
            assert "health       | exited with status -9; restarting in 0.5s" in log.read_text()
            started += [p.pid for p in psutil.Process(dev.pid).children(recursive=True)]

            # As a terminal's Ctrl-C does: SIGINT to victor dev's whole foreground process group.
            os.killpg(dev.pid, signal.SIGINT)
            async with asyncio.timeout(90):
                assert await dev.wait() == 0
            assert await wait_gone(started) == [], [psutil.Process(p).cmdline() for p in started if alive(p)]
            assert log.read_text().rstrip().endswith("victor dev: stopped")
            assert "Traceback" not in log.read_text()
            assert not (data_dir / "dev.json").exists()
        finally:
            await kill_leftovers(dev, started + postgres_processes(data_dir))
            shutil.rmtree(data_dir, ignore_errors=True)


async def test_sigterm_stops_victor_dev_and_leaves_configured_services_running(
    services, tmp_path: Path
) -> None:
    log = tmp_path / "dev.log"
    port_base = free_port_range(6)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VICTOR_")}
    env.update(DATABASE_URL=services.database_url, REDIS_URL=services.redis_url)
    dev = await start_victor_dev(
        log, env, *("--only", "health", "--port-base", str(port_base), "--data-dir", str(tmp_path / "data"))
    )
    started: list[int] = []
    try:
        assert await wait_for_line(log, "victor dev is running", dev, limit=60), log.read_text()
        rows = {
            line.split()[0]: line.split()[1:]
            for line in log.read_text().splitlines()
            if line.startswith("  ")
        }
        assert rows["health"] == [f"http://127.0.0.1:{port_base + 4}", "ready"]
        assert rows["postgres"][-1] == rows["redis"][-1] == "configured"
        assert "broker" not in rows and "dead-letters" not in rows
        started = [p.pid for p in psutil.Process(dev.pid).children(recursive=True)]
        assert len(started) == 1

        dev.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await dev.wait() == 0
        assert await wait_gone(started) == []
        assert log.read_text().rstrip().endswith("victor dev: stopped")
        # victor dev did not start these, so it does not stop them.
        assert redis.Redis.from_url(services.redis_url).ping() is True
    finally:
        await kill_leftovers(dev, started)
