"""The health function under functions-framework:

    functions-framework --asgi --target handle --source functions/health/main.py --port 8080

A bad setting stops the process here, at import, with one line naming the
variable (exit status 2), as `victor serve health` does.
"""

from common.framework_target import entry_settings, target
from functions.health.function import FUNCTION

settings = entry_settings()
handle = target(FUNCTION, settings)
