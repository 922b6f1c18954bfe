"""The record of CloudEvents already handled, so redelivery does no work twice.

Each function claims (source, id) before it handles an event. A second delivery
of a finished event gets the stored reply back; one that arrives while the
first is still running is told to retry later (409, which brokers retry).
PostgreSQL keeps the record when configured: there a claim is a lease of
`lease` seconds that the handling process renews while it runs, so the claim
of a replica that died (SIGKILL, OOM) lapses within seconds and the broker's
retry handles the event, well inside its retry window. Otherwise a bounded
in-process map, whose claims expire after `claim_timeout` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from common.cloudevents import CloudEvent, from_json, to_json
from common.lease import LEASE_SECONDS, keep_renewing
from common.store import Store, store_outage

if TYPE_CHECKING:
    import asyncpg

ClaimState = Literal["new", "running", "done"]


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    reply: CloudEvent | None = None


class ProcessedEvents:
    def __init__(
        self,
        function: str,
        store: Store,
        *,
        claim_timeout: float = 300.0,
        lease: float = LEASE_SECONDS,
        memory_size: int = 10000,
    ):
        self.function = function
        self.store = store
        self.claim_timeout = claim_timeout
        self.lease = lease
        self._renewals: set[asyncio.Task[None]] = set()
        self.memory_size = memory_size
        self._memory: OrderedDict[tuple[str, str], tuple[str, bytes | None, float]] = OrderedDict()
        # Claims this process could not release while PostgreSQL was away: released before they are
        # claimed again, so the retry is not told "in progress" until the claim expires.
        self._unreleased: set[tuple[str, str]] = set()

    async def claim(self, event: CloudEvent) -> Claim:
        """Claim the event for handling, or learn it is running or done (with its reply)."""
        if not self.store.configured:
            return self._claim_memory(event)
        pool = await self.store.pool()
        if (event.source, event.id) in self._unreleased:
            await self._delete_running(pool, event)
            self._unreleased.discard((event.source, event.id))
        row = await pool.fetchrow(
            """
            INSERT INTO processed_events (function, source, id, state) VALUES ($1, $2, $3, 'running')
            ON CONFLICT (function, source, id) DO UPDATE
               SET state = 'running', claimed_at = now()
             WHERE processed_events.state = 'running'
               AND processed_events.claimed_at < now() - make_interval(secs => $4)
            RETURNING state
            """,
            self.function,
            event.source,
            event.id,
            self.lease,
        )
        if row is not None:
            self._keep_claimed(event)
            return Claim("new")
        existing = await pool.fetchrow(
            "SELECT state, reply FROM processed_events WHERE function = $1 AND source = $2 AND id = $3",
            self.function,
            event.source,
            event.id,
        )
        if existing is None:  # released between the two statements: take it
            return await self.claim(event)
        if existing["state"] == "done":
            return Claim("done", from_json(existing["reply"]) if existing["reply"] else None)
        return Claim("running")

    def _keep_claimed(self, event: CloudEvent) -> None:
        """Renew the lease until the claim is no longer running (finished or released)."""

        async def renew() -> bool:
            pool = await self.store.pool()
            held = await pool.fetchval(
                "UPDATE processed_events SET claimed_at = now()"
                " WHERE function = $1 AND source = $2 AND id = $3 AND state = 'running' RETURNING 1",
                self.function,
                event.source,
                event.id,
            )
            return held is not None

        task = asyncio.get_running_loop().create_task(keep_renewing(renew, self.lease))
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)

    async def stop(self) -> None:
        """Stop renewing (at shutdown): claims still running lapse within their lease."""
        for task in list(self._renewals):
            task.cancel()
        await asyncio.gather(*self._renewals, return_exceptions=True)

    async def finish(self, event: CloudEvent, reply: CloudEvent | None) -> None:
        """Record the reply (None for 202) of a handled event."""
        stored = to_json(reply) if reply is not None else None
        if not self.store.configured:
            self._memory[(event.source, event.id)] = ("done", stored, time.monotonic())
            return
        pool = await self.store.pool()
        await pool.execute(
            "UPDATE processed_events SET state = 'done', reply = $4, finished_at = now()"
            " WHERE function = $1 AND source = $2 AND id = $3",
            self.function,
            event.source,
            event.id,
            stored,
        )

    async def release(self, event: CloudEvent) -> None:
        """Forget a claim whose handling failed, so a retry may handle it."""
        if not self.store.configured:
            self._memory.pop((event.source, event.id), None)
            return
        try:
            await self._delete_running(await self.store.pool(), event)
        except Exception as exc:
            if store_outage(exc) is None:
                raise
            self._unreleased.add((event.source, event.id))

    async def _delete_running(self, pool: asyncpg.Pool, event: CloudEvent) -> None:
        await pool.execute(
            "DELETE FROM processed_events WHERE function = $1 AND source = $2 AND id = $3"
            " AND state = 'running'",
            self.function,
            event.source,
            event.id,
        )

    def _claim_memory(self, event: CloudEvent) -> Claim:
        key = (event.source, event.id)
        now = time.monotonic()
        found = self._memory.get(key)
        if found is not None:
            state, reply, at = found
            if state == "done":
                return Claim("done", from_json(reply) if reply else None)
            if now - at < self.claim_timeout:
                return Claim("running")
        self._memory[key] = ("running", None, now)
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_size:
            self._memory.popitem(last=False)
        return Claim("new")
