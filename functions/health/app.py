"""The health function: its spec and its Litestar app."""

from __future__ import annotations

from litestar import Litestar, Response, get

from common.app import create_app
from common.function import FunctionSpec, Runtime
from common.settings import Settings
from eventing.schemas.health import PING, HealthReported
from functions.health.handlers import on_ping, status_report


@get("/v1/status")
async def status(runtime: Runtime) -> Response[HealthReported]:
    """Every dependency and every other function with state and latency; 503 when all are down."""
    code, report = await status_report(runtime)
    return Response(report, status_code=code)


SPEC = FunctionSpec(
    name="health",
    event_handlers={PING: on_ping},
    routes=[status],
    reports=("redis", "postgres"),
)


def create(settings: Settings | None = None) -> Litestar:
    return create_app(SPEC, settings)
