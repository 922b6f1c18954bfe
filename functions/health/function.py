"""The health function, declared once: its event, its route, its dependencies."""

from __future__ import annotations

from common.function import FunctionSpec, Route
from eventing.schemas.health import PING, HealthReported
from functions.health.handlers import on_ping, v1_status

FUNCTION = FunctionSpec(
    name="health",
    event_handlers={PING: on_ping},
    routes=[
        Route(
            "GET",
            "/v1/status",
            v1_status,
            returns=HealthReported,
            summary="Every function and dependency with state and latency",
        )
    ],
    reports=("redis", "postgres"),
)
