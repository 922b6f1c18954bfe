"""JSON-lines logging: fields, trace and event context, levels, file rotation and retention."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import tracing
from common.logging import JsonFormatter, configure_logging, event_id, event_traceparent
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


@pytest.mark.usefixtures("restore_root_logger")
def test_rotated_files_sort_by_name_in_the_order_they_were_written(tmp_path: Path) -> None:
    log_file = tmp_path / "victor.log"
    configure_logging(load_settings({"VICTOR_LOG_FILE": str(log_file), "VICTOR_LOG_MAX_SIZE": "1KB"}))
    logger = logging.getLogger("victor.test.order")
    for number in range(90):
        logger.info("record %03d %s", number, "y" * 40)
    rotated = sorted(p for p in tmp_path.iterdir() if p != log_file)
    assert len(rotated) >= 11  # past .10, where numbered backups list out of order
    in_name_order = [
        json.loads(line)["message"][:10]
        for path in [*rotated, log_file]
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert in_name_order == [f"record {n:03d}" for n in range(90)]


def test_warnings_and_uvicorn_colour_copies_come_out_as_plain_json() -> None:
    """In a process of its own, as a service runs: pytest would catch the warning itself."""
    program = """
import logging, os, warnings
from common.logging import configure_logging
from common.settings import load_settings
configure_logging(load_settings({}))
warnings.warn("the old API is deprecated", UserWarning, stacklevel=1)
logging.getLogger("uvicorn.error").info(
    "Uvicorn running on %s", "http://127.0.0.1:1", extra={"color_message": "on \x1b[1m%s\x1b[0m"}
)
print(os.environ["HF_HUB_DISABLE_PROGRESS_BARS"], os.environ["TQDM_DISABLE"])
"""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")
    }
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, env=environ, check=True
    )
    *lines, quiet = done.stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["logger"] for r in records] == ["py.warnings", "uvicorn.error"]
    assert "UserWarning: the old API is deprecated" in records[0]["message"]
    assert "color_message" not in records[1]
    assert "\x1b" not in done.stdout
    assert (quiet, done.stderr) == ("1 1", "")


@pytest.mark.usefixtures("restore_root_logger")
def test_records_outside_a_span_carry_the_trace_of_the_event_being_handled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(load_settings({}))
    token = event_traceparent.set("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    try:
        logging.getLogger("eventing.broker.dispatch").info("delivered")
    finally:
        event_traceparent.reset(token)
    logging.getLogger("eventing.broker.dispatch").info("no event now")
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (first["trace_id"], first["span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert "trace_id" not in second
