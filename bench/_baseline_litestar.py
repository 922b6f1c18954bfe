"""The bare Litestar baseline: the same trivial answers, no middleware, metrics or tracing.

Served by `python -m uvicorn bench._baseline_litestar:app`, the same server and
settings `victor serve` uses.
"""

from litestar import Litestar, get


@get("/health/live", sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "alive"}


@get("/health/ready", sync_to_thread=False)
def ready() -> dict[str, str]:
    return {"status": "ready"}


app = Litestar(route_handlers=[live, ready])
