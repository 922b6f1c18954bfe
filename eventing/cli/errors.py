"""How a `victor` command stops on a user error: one line on stderr and an exit status."""

from __future__ import annotations

import sys
from typing import NoReturn


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `victor: MESSAGE` on stderr and exit with `code` (2: bad usage, 1: the operation failed)."""
    print(f"victor: {message}", file=sys.stderr)
    raise SystemExit(code)
