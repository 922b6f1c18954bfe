"""Payload of `ai.victor.health.reported`, the health function's reply to a ping."""

from __future__ import annotations

from typing import Literal

import msgspec

from eventing.schemas.event_type import EventType, Payload


class ComponentStatus(msgspec.Struct, kw_only=True):
    """One dependency or function as the health function saw it."""

    name: str
    kind: Literal["dependency", "function"]
    state: Literal["up", "down", "unconfigured"]
    latency_ms: float | None = None
    error: str | None = None


class HealthReported(Payload, kw_only=True):
    status: Literal["ok", "degraded", "down"]
    checked_at: str
    components: list[ComponentStatus]


# The PingSource's data is whatever its manifest says; the health function does not read it.
PING_EVENT = EventType("dev.knative.sources.ping", None)
PING = PING_EVENT.name
HEALTH_REPORTED_EVENT = EventType("ai.victor.health.reported", HealthReported)
HEALTH_REPORTED = HEALTH_REPORTED_EVENT.name
