"""The PingSource of the knative/ manifests, replayed by `victor dev`.

On a cluster Knative's PingSource posts `dev.knative.sources.ping` to the
broker on a cron schedule. Locally `victor dev` reads the same PingSource
objects and sends the same event to the local broker. Only the schedules a
dev loop needs are understood: every minute (`* * * * *`) and every N
minutes (`*/N * * * *`); any other schedule is reported and skipped (use
`--ping-interval` to choose an interval instead).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from common.cloudevents import CloudEvent, now_rfc3339
from eventing.client import DeliveryError, send_event
from eventing.schemas.health import PING

log = logging.getLogger(__name__)
_EVERY_N_MINUTES = re.compile(r"^\*/([1-9][0-9]*)$")


class ScheduleError(ValueError):
    """A cron schedule the dev ping loop does not understand."""


@dataclass(frozen=True)
class PingSchedule:
    """One PingSource: how often it fires and the event it sends."""

    name: str
    namespace: str
    interval: float
    content_type: str | None = None
    data: bytes | None = None

    def event(self) -> CloudEvent:
        """A fresh ping event, shaped as Knative's PingSource adapter shapes it."""
        return CloudEvent(
            id=str(uuid.uuid4()),
            source=f"/apis/v1/namespaces/{self.namespace}/pingsources/{self.name}",
            type=PING,
            time=now_rfc3339(),
            datacontenttype=self.content_type if self.data is not None else None,
            data=self.data,
        )


def cron_interval(schedule: str) -> float:
    """Seconds between firings for `* * * * *` and `*/N * * * *`; ScheduleError for anything else."""
    fields = schedule.split()
    if len(fields) != 5 or fields[1:] != ["*", "*", "*", "*"]:
        raise ScheduleError(f"schedule {schedule!r} is not every minute or every N minutes")
    if fields[0] == "*":
        return 60.0
    match = _EVERY_N_MINUTES.match(fields[0])
    if match is None:
        raise ScheduleError(f"schedule {schedule!r} is not every minute or every N minutes")
    return 60.0 * int(match.group(1))


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    files = sorted(path.rglob("*.y*ml")) if path.is_dir() else [path]
    for file in files:
        if file.suffix not in (".yaml", ".yml"):
            continue
        try:
            documents = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as exc:
            log.warning("skipping %s: %s", file, exc)
            continue
        for document in documents:
            if isinstance(document, dict):
                yield document


def load_ping_schedules(
    path: Path, *, namespace: str = "victor", interval: float | None = None
) -> list[PingSchedule]:
    """Every PingSource under `path`; `interval` (seconds) replaces each cron schedule when given.

    A PingSource without a namespace takes `namespace`, as kustomize's `namespace:` gives it.

    A PingSource whose schedule is not understood is logged and left out.
    """
    schedules = []
    for document in _documents(path):
        if document.get("kind") != "PingSource":
            continue
        metadata = document.get("metadata") or {}
        spec = document.get("spec") or {}
        name = str(metadata.get("name", "ping"))
        try:
            every = interval if interval is not None else cron_interval(str(spec.get("schedule", "")))
        except ScheduleError as exc:
            log.warning("PingSource %s is not replayed locally: %s; use --ping-interval", name, exc)
            continue
        data: bytes | None = None
        if spec.get("dataBase64"):
            data = base64.b64decode(str(spec["dataBase64"]))
        elif spec.get("data") is not None:
            data = str(spec["data"]).encode("utf-8")
        schedules.append(
            PingSchedule(
                name=name,
                namespace=str(metadata.get("namespace") or namespace),
                interval=every,
                content_type=spec.get("contentType"),
                data=data,
            )
        )
    return schedules


async def ping_forever(
    schedule: PingSchedule, target: str, http: httpx.AsyncClient, credentials: Mapping[str, str] | None = None
) -> None:
    """Send the schedule's ping to `target` (with `credentials`) every `interval` seconds until cancelled."""
    while True:
        await asyncio.sleep(schedule.interval)
        try:
            await send_event(http, target, schedule.event(), timeout=10.0, credentials=credentials)
        except DeliveryError as exc:
            log.warning("ping %s to %s failed: %s", schedule.name, target, exc)
