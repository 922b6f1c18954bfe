"""The bare functions-framework baseline: one async HTTP function giving the trivial answer.

Served by `functions-framework --asgi --target alive --source bench/_baseline_functions_framework.py`;
functions-framework routes every path to the function, so /health/live and /health/ready both answer.
Imports nothing else, so its cold start is functions-framework's own.
"""

from typing import Any


async def alive(request: Any) -> dict[str, str]:
    return {"status": "alive"}
