"""Where `victor dev` serves each process: fixed offsets from `--port-base`, and the broker's path."""

from __future__ import annotations

from common.settings import FUNCTION_NAMES

# Port offsets from --port-base; the broker first, then the functions in their fixed order.
PORTS = {name: offset for offset, name in enumerate(("broker", *FUNCTION_NAMES))}
# The dead-letter display runs inside `victor dev` itself, on the port after the functions.
DEAD_LETTER_OFFSET = len(PORTS)
BROKER_PATH = "/victor/default"
