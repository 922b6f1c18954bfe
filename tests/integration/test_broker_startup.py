"""Start-up refuses what the broker cannot serve, with one line naming the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import SettingsError, load_settings
from eventing.broker.app import create
from eventing.dev.embedded import free_port
from scripts.validate_manifests import main as validate_manifests
from tests.support.broker import broker_manifest, broker_settings, trigger_manifest, write_objects

REPO = Path(__file__).resolve().parents[2]
# The webhook refuses it (the pattern of LIKE must be a string literal), so the broker does too.
BAD_CESQL_TRIGGER = trigger_manifest("sql", "http://127.0.0.1:9/x", filters=[{"cesql": "type LIKE 1"}])
BAD_CESQL_LINE = (
    "VICTOR_TRIGGERS_PATH: Trigger victor/sql (eventing.yaml).filters[0].cesql is not a valid CESQL "
    "expression: expected a string literal after LIKE at 11, found '1'"
)


def test_an_invalid_cesql_filter_stops_start_up_naming_the_trigger(make_settings, tmp_path) -> None:
    settings = make_settings()
    config = broker_settings(settings, write_objects(tmp_path, broker_manifest(), BAD_CESQL_TRIGGER))
    with pytest.raises(SettingsError) as raised:
        create(settings, config)
    assert str(raised.value) == BAD_CESQL_LINE


def test_victor_serve_broker_prints_one_line_and_exits_2_on_an_invalid_cesql_trigger(
    services, tmp_path
) -> None:
    path = write_objects(tmp_path, broker_manifest(), BAD_CESQL_TRIGGER)
    env = {**os.environ, **services.env(VICTOR_TRIGGERS_PATH=str(path), PORT=str(free_port()))}
    done = subprocess.run(
        [sys.executable, "-m", "eventing.cli", "serve", "broker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"victor: {BAD_CESQL_LINE}"]


def test_the_broker_needs_redis(tmp_path) -> None:
    settings = load_settings({})
    config = broker_settings(settings, write_objects(tmp_path, broker_manifest()))
    with pytest.raises(SettingsError, match=r"^REDIS_URL: the broker keeps accepted events in Redis"):
        create(settings, config)


def test_a_bad_subscriber_url_map_is_refused() -> None:
    settings = load_settings({})
    with pytest.raises(SettingsError, match=r"^VICTOR_SUBSCRIBER_URLS: expected name=http://host:port"):
        broker_settings(settings, Path("."), VICTOR_SUBSCRIBER_URLS="victor-chat:8001")


@pytest.mark.parametrize(
    ("filters", "problem"),
    [
        ([{"exact": {"Type": "a"}}], "filters[0].exact attribute 'Type' must match ^[a-z][a-z0-9]*$"),
        ([{"prefix": {"type\n": "a"}}], "filters[0].prefix attribute 'type\\n' must match ^[a-z][a-z0-9]*$"),
        (
            [{"not": {"suffix": {"conversation_id": "a"}}}],
            "filters[0].not.suffix attribute 'conversation_id' must match ^[a-z][a-z0-9]*$",
        ),
        ([{"cesql": "4 -1"}], "filters[0].cesql is not a valid CESQL expression: expected an operator or "),
    ],
)
def test_the_validator_and_the_broker_refuse_what_the_webhook_refuses_with_one_message(
    make_settings, tmp_path, capsys, filters, problem
) -> None:
    settings = make_settings()
    trigger = trigger_manifest("t", "http://127.0.0.1:9/x", filters=filters)
    path = write_objects(tmp_path, broker_manifest(), trigger)
    with pytest.raises(SettingsError) as raised:
        create(settings, broker_settings(settings, path))
    assert validate_manifests([str(path / "eventing.yaml")]) == 1
    [validator_line] = [line for line in capsys.readouterr().err.splitlines() if "Trigger/t" in line]
    assert f"Trigger victor/t (eventing.yaml).{problem}" in str(raised.value)
    assert "Trigger/t: " in validator_line and f": spec.{problem}" in validator_line
