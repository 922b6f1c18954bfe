"""The tools function under functions-framework:

    functions-framework --asgi --target handle --source functions/tools/main.py --port 8080

Serves what `victor serve tools` serves, except MCP (`/mcp` needs the session
manager's lifespan, which functions-framework does not run).
"""

from common.framework_target import entry_settings, target
from functions.tools.function import FUNCTION

settings = entry_settings()
handle = target(FUNCTION, settings)
