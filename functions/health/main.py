"""The health function under functions-framework, over the same handlers as its Litestar app.

    functions-framework --asgi --target handle --source functions/health/main.py --port 8080

A bad setting stops the process here, at import, with one line naming the
variable (exit status 2), as `victor serve health` does.
"""

from __future__ import annotations

from starlette.requests import Request

from common.framework_target import entry_settings, json_answer, make_target
from common.function import Answer, Runtime
from functions.health.app import SPEC
from functions.health.handlers import status_report


async def v1_status(request: Request, runtime: Runtime) -> Answer:
    return json_answer(*await status_report(runtime))


settings = entry_settings()
handle = make_target(SPEC, settings, extra_routes={("GET", "/v1/status"): v1_status})
