"""Where `victor dev` serves each process (fixed offsets from `--port-base`, the broker's path) and
where it keeps its data and this run's event token."""

from __future__ import annotations

from common.settings import FUNCTION_NAMES

# Port offsets from --port-base; the broker first, then the functions in their fixed order.
PORTS = {name: offset for offset, name in enumerate(("broker", *FUNCTION_NAMES))}
# The dead-letter display runs inside `victor dev` itself, on the port after the functions.
DEAD_LETTER_OFFSET = len(PORTS)
BROKER_PATH = "/victor/default"
DEFAULT_BROKER_URL = f"http://127.0.0.1:8000{BROKER_PATH}"
# victor dev's data directory by default, and the file in it holding the run's event token.
DEFAULT_DATA_DIR = ".victor"
EVENT_TOKEN_FILE = "event-token"  # noqa: S105 - a file name, not a token
