"""JSON-lines logging with trace and CloudEvent context.

Each record is one JSON object on stdout: time, level, logger, message,
trace_id, span_id and event_id where they exist. An optional file log rotates
at VICTOR_LOG_MAX_SIZE and drops rotated files older than VICTOR_LOG_RETENTION_DAYS.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from opentelemetry import trace

from common.settings import Settings

event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
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
    """Rotates by size and deletes rotated files older than the retention period."""

    def __init__(self, path: str, max_bytes: int, retention_days: int) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, maxBytes=max_bytes, backupCount=1000, encoding="utf-8")
        self.retention_seconds = retention_days * 86400

    def doRollover(self) -> None:
        super().doRollover()
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
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
