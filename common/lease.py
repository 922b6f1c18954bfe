"""Leases held in PostgreSQL and renewed while their holder runs.

A claim stored with a timestamp (an event being handled, a chat step's LLM call) is a lease:
another replica may take it over once the timestamp is older than the lease. The holder
renews it every third of the lease while it works, so a long call keeps its claim, and the
claim of a process that died (SIGKILL, OOM) lapses within one lease, well inside a broker's
retry window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from common.store import store_outage

log = logging.getLogger(__name__)

# Seconds a claim outlives its holder's last renewal.
LEASE_SECONDS = 10.0

Renew = Callable[[], Awaitable[bool]]


async def keep_renewing(renew: Renew, lease: float = LEASE_SECONDS) -> None:
    """Call `renew` every third of `lease` until it answers False (the claim is no longer held).
    A store that is away is tried again at the next period: the lease lapses only if it stays away.
    Any other error stops the renewals (logged), so the claim lapses as a dead holder's would."""
    while True:
        await asyncio.sleep(lease / 3)
        try:
            held = await renew()
        except Exception as exc:
            if store_outage(exc) is not None:
                continue
            log.warning("a lease could not be renewed and will lapse: %s", type(exc).__name__)
            return
        if not held:
            return


@contextlib.asynccontextmanager
async def renewed(renew: Renew, lease: float = LEASE_SECONDS) -> AsyncIterator[None]:
    """Keep a claim renewed while the body runs; renewing stops when the body ends."""
    task = asyncio.get_running_loop().create_task(keep_renewing(renew, lease))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
