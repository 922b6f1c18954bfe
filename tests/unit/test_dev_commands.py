"""`victor dev` planning: which processes run, on which ports, with which environment; PingSources."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import httpx
import pytest

from eventing.cli.dev import parse_only
from eventing.dead_letters import DeadLetterDisplay
from eventing.dev.ping import PingSchedule, ScheduleError, cron_interval, load_ping_schedules, ping_forever
from eventing.dev.runner import choose_dev_embedding_model, plan_processes
from eventing.dev.stores import DevDataError, prepare_data_dir
from tests.support.recorder import EventRecorder
from tests.support.servers import running

ENVIRON = {"PATH": "/usr/bin", "VICTOR_CHAT_URL": "http://elsewhere:9000", "REDIS_URL": "redis://r:1/0"}


def test_every_built_process_gets_its_port_and_the_urls_of_the_others() -> None:
    plan = plan_processes(["broker", "health"], 9100, ENVIRON, python="py")
    assert [spec.name for spec in plan.specs] == ["broker", "health"]
    broker, health = plan.specs
    assert broker.argv == ["py", "-m", "eventing.cli", "serve", "broker", "--host", "127.0.0.1"]
    assert broker.env["PORT"] == "9100"
    assert health.env["PORT"] == "9104"
    assert health.ready_url == "http://127.0.0.1:9104/health/ready"
    for spec in plan.specs:
        assert spec.env["VICTOR_BROKER_URL"] == "http://127.0.0.1:9100/victor/default"
        assert spec.env["VICTOR_HEALTH_URL"] == "http://127.0.0.1:9104"
        assert spec.env["REDIS_URL"] == "redis://r:1/0"
    # chat is not running, so health does not check it ...
    assert "VICTOR_CHAT_URL" not in health.env
    # ... but every Trigger subscriber resolves for the broker (chat's events dead-letter locally).
    assert broker.env["VICTOR_CHAT_URL"] == "http://127.0.0.1:9101"
    assert broker.env["VICTOR_SUBSCRIBER_URLS"] == "victor-dead-letters=http://127.0.0.1:9105"
    assert plan.urls == {"broker": "http://127.0.0.1:9100/victor/default", "health": "http://127.0.0.1:9104"}
    assert plan.dead_letter_port == 9105


def test_the_users_subscriber_urls_come_after_the_dev_defaults_so_they_win() -> None:
    environ = dict(ENVIRON, VICTOR_SUBSCRIBER_URLS="victor-dead-letters=http://dl:1,sink=http://s:2")
    (broker,) = plan_processes(["broker"], 8000, environ).specs
    assert broker.env["VICTOR_SUBSCRIBER_URLS"] == (
        "victor-dead-letters=http://127.0.0.1:8005,victor-dead-letters=http://dl:1,sink=http://s:2"
    )


def test_only_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_only("health, broker") == ["health", "broker"]
    assert parse_only(None) == ["broker", "chat", "tools", "embeddings", "health"]
    with pytest.raises(SystemExit) as exit_info:
        parse_only("health,mail")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "victor: --only: unknown name mail; choose from broker, chat, tools, embeddings, health\n"
    )


@pytest.mark.parametrize(
    ("schedule", "seconds"), [("* * * * *", 60.0), ("*/1 * * * *", 60.0), ("*/15 * * * *", 900.0)]
)
def test_every_minute_schedules_are_understood(schedule: str, seconds: float) -> None:
    assert cron_interval(schedule) == seconds


@pytest.mark.parametrize("schedule", ["0 * * * *", "*/5 3 * * *", "*/0 * * * *", "@hourly", ""])
def test_other_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(ScheduleError):
        cron_interval(schedule)


PINGSOURCES = """
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: health-ping, namespace: victor}
spec:
  schedule: "*/2 * * * *"
  contentType: application/json
  data: '{"message": "tick"}'
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: nightly}
spec: {schedule: "0 3 * * *"}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: not-a-ping}
"""


def test_pingsources_are_read_from_the_manifests(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "ping.yaml").write_text(PINGSOURCES)
    (tmp_path / "kustomization.yaml").write_text("resources: [nested/ping.yaml]\n")
    assert load_ping_schedules(tmp_path) == [
        PingSchedule("health-ping", "victor", 120.0, "application/json", b'{"message": "tick"}')
    ]
    overridden = load_ping_schedules(tmp_path, interval=5.0)
    assert [(s.name, s.interval) for s in overridden] == [("health-ping", 5.0), ("nightly", 5.0)]


async def test_the_ping_loop_sends_knative_shaped_ping_events() -> None:
    receiver = EventRecorder(status=202)
    schedule = PingSchedule("health-ping", "victor", 0.05, "application/json", b'{"message": "tick"}')
    async with running(receiver) as url, httpx.AsyncClient() as http:
        task = asyncio.create_task(ping_forever(schedule, f"{url}/victor/default", http))
        try:
            events = await receiver.wait_for(lambda event: len(receiver.requests) >= 2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert len(events) >= 2
    assert len({event.id for event in events}) == len(events)
    for event in events:
        assert event.type == "dev.knative.sources.ping"
        assert event.source == "/apis/v1/namespaces/victor/pingsources/health-ping"
        assert event.json() == {"message": "tick"}


def test_fresh_wipes_only_a_directory_victor_dev_created(tmp_path: Path) -> None:
    data = prepare_data_dir(tmp_path / "dev", fresh=False)
    (data / "old").write_text("x")
    assert prepare_data_dir(data, fresh=True) == data
    assert sorted(p.name for p in data.iterdir()) == [".victor-dev"]
    foreign = tmp_path / "important"
    foreign.mkdir()
    (foreign / "keep").write_text("x")
    with pytest.raises(DevDataError, match="refuses to delete"):
        prepare_data_dir(foreign, fresh=True)
    assert (foreign / "keep").exists()


async def test_the_dead_letter_display_reports_each_dead_letter_on_one_line() -> None:
    lines: list[str] = []
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "dl-1",
        "ce-source": "/tests",
        "ce-type": "ai.victor.chat.requested",
        "ce-knativeerrordest": "http://127.0.0.1:8001",
        "ce-knativeerrorcode": "503",
        "content-type": "application/json",
    }
    async with running(DeadLetterDisplay(lines.append)) as url, httpx.AsyncClient() as http:
        accepted = await http.post(url, headers=headers, content=b"{}")
        invalid = await http.post(url, content=b"not an event")
        wrong_method = await http.get(url)
    assert (accepted.status_code, invalid.status_code, wrong_method.status_code) == (202, 400, 405)
    first, second = (json.loads(line) for line in lines)  # JSON log lines, like the functions'
    assert first["message"] == (
        "dead letter ai.victor.chat.requested id=dl-1 source=/tests: http://127.0.0.1:8001 answered 503"
    )
    assert (first["logger"], first["level"], first["event_id"], first["knativeerrorcode"]) == (
        "victor.dead_letters",
        "WARNING",
        "dl-1",
        "503",
    )
    assert second["message"].startswith("dead letter that is not a valid CloudEvent: not a CloudEvent")
    assert len(lines) == 2


def test_dev_uses_the_bundled_model_only_when_no_model_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    from common.embedding_model import bundled_model_path

    unset: dict[str, str] = {}
    chosen = choose_dev_embedding_model(unset)
    assert chosen == bundled_model_path()
    assert chosen is not None and Path(chosen, "config.json").is_file()
    assert unset == {"VICTOR_EMBEDDING_MODEL": chosen, "HF_HUB_OFFLINE": "1"}
    assert "using the bundled all-MiniLM-L6-v2" in capsys.readouterr().out

    named = {"VICTOR_EMBEDDING_MODEL": "BAAI/bge-small-en-v1.5"}
    assert choose_dev_embedding_model(named) is None
    assert named == {"VICTOR_EMBEDDING_MODEL": "BAAI/bge-small-en-v1.5"}
