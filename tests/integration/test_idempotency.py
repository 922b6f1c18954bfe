"""Event claims in PostgreSQL are leases: renewed while the handler runs, lapsed soon after it died."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from common.cloudevents import CloudEvent, new_event
from common.idempotency import ProcessedEvents
from common.store import Store, migrate
from tests.support.databases import scratch_database

LEASE = 0.6


@pytest.fixture
async def store(services) -> AsyncIterator[Store]:
    async with scratch_database(services.database_url, "victor_claims") as url:
        await migrate(url)
        store = Store(url)
        try:
            yield store
        finally:
            await store.close()


def event(name: str = "one") -> CloudEvent:
    return new_event("ai.victor.test", "/test/claims", {"n": 1}, id=f"{name}-{uuid.uuid4()}")


async def test_a_running_handler_keeps_its_claim_past_the_lease(store) -> None:
    handling, redelivery = ProcessedEvents("f", store, lease=LEASE), ProcessedEvents("f", store, lease=LEASE)
    delivered = event()
    assert (await handling.claim(delivered)).state == "new"

    await asyncio.sleep(LEASE * 2)  # renewed meanwhile by the handling process

    assert (await redelivery.claim(delivered)).state == "running"
    await handling.finish(delivered, None)
    assert (await redelivery.claim(delivered)).state == "done"


async def test_the_claim_of_a_process_that_died_lapses_after_the_lease(store) -> None:
    died = ProcessedEvents("f", store, lease=LEASE)
    delivered = event()
    assert (await died.claim(delivered)).state == "new"
    for renewal in list(died._renewals):  # the process is gone: nothing renews its claim any more
        renewal.cancel()

    await asyncio.sleep(LEASE * 2)

    retry = ProcessedEvents("f", store, lease=LEASE)
    assert (await retry.claim(delivered)).state == "new"


async def test_renewal_stops_once_the_event_is_finished(store) -> None:
    processed = ProcessedEvents("f", store, lease=LEASE)
    delivered = event()
    await processed.claim(delivered)
    (renewal,) = processed._renewals
    await processed.finish(delivered, None)

    await asyncio.wait_for(renewal, LEASE * 5)

    assert processed._renewals == set()
    pool = await store.pool()
    state = await pool.fetchval("SELECT state FROM processed_events WHERE id = $1", delivered.id)
    assert state == "done"
