"""JSON-lines logging: fields, trace and event context, levels, file rotation and retention."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import tracing
from common.logging import JsonFormatter, configure_logging, event_id
from common.settings import load_settings


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in handlers:
            handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def capture(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_a_record_is_one_json_line_with_trace_span_and_event_ids() -> None:
    tracing.configure_tracing(load_settings({}), "test")
    logger, stream = capture("victor.test.context")
    token = event_id.set("event-42")
    try:
        with tracing.tracer("test").start_as_current_span("work") as span:
            logger.info("handled %s", "ping", extra={"attempt": 2})
            context = span.get_span_context()
    finally:
        event_id.reset(token)
    logger.warning("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert set(first) == {"time", "level", "logger", "message", "trace_id", "span_id", "event_id", "attempt"}
    assert first["level"] == "INFO"
    assert first["logger"] == "victor.test.context"
    assert first["message"] == "handled ping"
    assert first["trace_id"] == format(context.trace_id, "032x")
    assert first["span_id"] == format(context.span_id, "016x")
    assert first["event_id"] == "event-42"
    assert first["attempt"] == 2
    assert first["time"].endswith("+00:00")
    assert set(second) == {"time", "level", "logger", "message"}


def test_an_exception_is_kept_inside_the_json_line() -> None:
    logger, stream = capture("victor.test.exception")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"]


@pytest.mark.usefixtures("restore_root_logger")
@pytest.mark.parametrize(
    ("env", "level"),
    [
        ({}, logging.INFO),
        ({"LOG_LEVEL": "warning"}, logging.WARNING),
        ({"VICTOR_LOG_LEVEL": "ERROR", "LOG_LEVEL": "DEBUG"}, logging.ERROR),
        ({"VICTOR_DEBUG": "yes"}, logging.DEBUG),
    ],
)
def test_the_root_level_follows_the_settings(env: dict[str, str], level: int) -> None:
    configure_logging(load_settings(env))
    assert logging.getLogger().level == level
    assert logging.getLogger("httpx").level >= logging.WARNING


@pytest.mark.usefixtures("restore_root_logger")
def test_the_file_log_rotates_at_the_size_limit(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "victor.log"
    configure_logging(load_settings({"VICTOR_LOG_FILE": str(log_file), "VICTOR_LOG_MAX_SIZE": "2KB"}))
    logger = logging.getLogger("victor.test.rotation")
    for number in range(100):
        logger.info("record %03d %s", number, "x" * 60)
    files = sorted(log_file.parent.iterdir())
    assert log_file in files
    assert len(files) >= 3
    assert all(path.stat().st_size <= 2048 for path in files)
    # Nothing is lost: every record is in exactly one file, as a JSON line.
    messages = [
        json.loads(line)["message"]
        for path in files
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert sorted(messages) == [f"record {n:03d} {'x' * 60}" for n in range(100)]


@pytest.mark.usefixtures("restore_root_logger")
def test_rotated_files_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    log_file = tmp_path / "victor.log"
    old, recent = tmp_path / "victor.log.7", tmp_path / "victor.log.2"
    for path in (old, recent):
        path.write_text("{}\n", encoding="utf-8")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    unrelated = tmp_path / "other.log.1"
    unrelated.write_text("{}\n", encoding="utf-8")
    os.utime(unrelated, (ten_days_ago, ten_days_ago))

    configure_logging(load_settings({"VICTOR_LOG_FILE": str(log_file), "VICTOR_LOG_RETENTION_DAYS": "7"}))

    assert not old.exists()
    assert recent.exists()
    assert unrelated.exists()
