"""The chat function under functions-framework:

    functions-framework --asgi --target handle --source functions/chat/main.py --port 8080

Serves what `victor serve chat` serves, `stream: true` as live Server-Sent Events included.
"""

from common.framework_target import entry_settings, target
from functions.chat.function import FUNCTION

settings = entry_settings()
handle = target(FUNCTION, settings)
