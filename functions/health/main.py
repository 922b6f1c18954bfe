"""The health function under functions-framework, over the same handlers as its Litestar app.

    functions-framework --asgi --target handle --source functions/health/main.py --port 8080

A bad setting stops the process here, at import, with one line naming the
variable (exit status 2), as `victor serve health` does.
"""

from __future__ import annotations

import sys

from starlette.requests import Request

from common.framework_target import json_answer, make_target
from common.function import Answer, Runtime, exit_cleanly_after_graceful_shutdown
from common.settings import SettingsError, get_settings
from functions.health.app import SPEC
from functions.health.handlers import status_report


async def v1_status(request: Request, runtime: Runtime) -> Answer:
    return json_answer(*await status_report(runtime))


try:
    settings = get_settings()
except SettingsError as exc:
    print(f"victor: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

exit_cleanly_after_graceful_shutdown()
handle = make_target(SPEC, settings, extra_routes={("GET", "/v1/status"): v1_status})
