"""JSON-lines logging with trace and CloudEvent context.

Each record is one JSON object on stdout: time, level, logger, message,
trace_id, span_id and event_id where they exist. Every line a service prints is
such an object: Python warnings go through logging (logger `py.warnings`),
progress bars of the model libraries are off, and uvicorn's `color_message`
(the message again, with ANSI colour codes) is dropped. Where no span is active
the trace id comes from the CloudEvent being handled (its `traceparent`), so
the broker's lines about a delivery carry the trace of the event they deliver.

An optional file log rotates at VICTOR_LOG_MAX_SIZE into files named by the
UTC time of the rotation (so their names sort in the order they were written)
and drops rotated files older than VICTOR_LOG_RETENTION_DAYS.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from opentelemetry import trace

from common.settings import Settings

event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)
# The W3C traceparent of the event being handled, for records written outside any span.
event_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "event_traceparent", default=None
)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    # uvicorn's copy of the message with ANSI colour codes: never wanted in a JSON log.
    "color_message",
}
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
# Read by the model libraries when they are first imported, after logging is configured.
QUIET_LIBRARIES = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        elif (parent := event_traceparent.get()) and (found := _TRACEPARENT.match(parent.strip().lower())):
            entry["trace_id"], entry["span_id"] = found.group(1), found.group(2)
        current_event = event_id.get()
        if current_event:
            entry["event_id"] = current_event
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


class RetentionFileHandler(logging.handlers.RotatingFileHandler):
    """Rotates by size into time-named files and deletes rotated files older than the retention period.

    Numbered backups (.1, .2, ... .10) list out of order and are all renamed at every rotation;
    `victor.log.20261130T120000.123456Z` files sort by name in the order they were written and are
    never renamed again.
    """

    def __init__(self, path: str, max_bytes: int, retention_days: int) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, maxBytes=max_bytes, backupCount=1, encoding="utf-8")
        self.retention_seconds = retention_days * 86400

    def doRollover(self) -> None:
        if self.stream:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = f"{self.baseFilename}.{stamp}"
        if os.path.exists(self.baseFilename):
            os.replace(self.baseFilename, target)
        self.stream = self._open()
        self.purge()

    def purge(self) -> None:
        cutoff = time.time() - self.retention_seconds
        base = Path(self.baseFilename)
        for old in base.parent.glob(base.name + ".*"):
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)


def configure_logging(settings: Settings) -> None:
    """Send every logger's records as JSON lines to stdout (and the file log when set)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = JsonFormatter()
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(formatter)
    root.addHandler(stdout)
    if settings.log_file:
        file_handler = RetentionFileHandler(
            settings.log_file, settings.log_max_size, settings.log_retention_days
        )
        file_handler.setFormatter(formatter)
        file_handler.purge()
        root.addHandler(file_handler)
    root.setLevel(settings.log_level)
    # Third-party loggers that repeat every request or print secrets in URLs stay quiet.
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Library warnings (LanceDB's deprecations, say) become JSON records instead of stderr text.
    logging.captureWarnings(True)
    for name, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(name, value)
