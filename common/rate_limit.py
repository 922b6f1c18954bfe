"""Per-key rate limits (VICTOR_RATE_LIMIT, e.g. 60/minute), shared by every replica through Redis.

Each API key has one fixed-window counter in Redis (`victor:ratelimit:<key digest>`),
counted and given its expiry in one Lua script, so replicas sharing Redis share
the limit. A request over it is refused 429 with `Retry-After` (the seconds left in
the window) and counted in `victor_rate_limited_total{function}`.

When Redis is unavailable the check fails open: the request is served (the API key
still guards it) and counted in `victor_rate_limit_unchecked_total`, because an
outage of the shared counter must not take every public route down with it.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from common import metrics
from common.answers import Refusal
from common.runtime import Runtime

# Requests without a key (no VICTOR_API_KEYS configured) share one window.
ANONYMOUS = "anonymous"


def window_key(runtime: Runtime[Any], api_key: str | None) -> str:
    """The Redis key of `api_key`'s window: a digest, so the key itself is never stored."""
    digest = hashlib.sha256((api_key or ANONYMOUS).encode()).hexdigest()[:32]
    return runtime.cache.key("ratelimit", digest)


async def check_rate_limit(runtime: Runtime[Any], api_key: str | None) -> None:
    """Return when `api_key` may make one more request now; raise the 429 refusal otherwise."""
    limit = runtime.settings.rate_limit
    if limit is None:
        return
    counted = await runtime.cache.count(window_key(runtime, api_key), limit.window)
    if counted is None:
        metrics.rate_limit_unchecked.labels(runtime.spec.name).inc()
        return
    count, seconds_left = counted
    if count > limit.requests:
        metrics.rate_limited.labels(runtime.spec.name).inc()
        retry_after = max(1, math.ceil(seconds_left))
        raise Refusal(
            429,
            f"this API key is over its rate limit of {limit} (VICTOR_RATE_LIMIT); retry in {retry_after}s",
            "rate_limited",
            headers={"retry-after": str(retry_after)},
        )
