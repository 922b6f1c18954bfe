"""Lease renewal: every third of the lease until the claim is gone; through a store outage."""

from __future__ import annotations

import asyncio

from common.lease import keep_renewing, renewed
from common.store import StoreUnavailable

LEASE = 0.15


async def test_renewals_go_on_through_an_outage_and_stop_when_the_claim_is_gone() -> None:
    answers: list[bool | Exception] = [
        True,
        StoreUnavailable("cannot connect to PostgreSQL: OSError"),
        True,
        False,
    ]
    calls = 0

    async def renew() -> bool:
        nonlocal calls
        answer = answers[calls]
        calls += 1
        if isinstance(answer, Exception):
            raise answer
        return answer

    await asyncio.wait_for(keep_renewing(renew, LEASE), timeout=5)
    assert calls == 4


async def test_an_error_that_is_no_outage_stops_renewing_so_the_claim_lapses() -> None:
    calls = 0

    async def renew() -> bool:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    await asyncio.wait_for(keep_renewing(renew, LEASE), timeout=5)
    assert calls == 1


async def test_renewed_stops_renewing_when_its_block_ends() -> None:
    calls = 0

    async def renew() -> bool:
        nonlocal calls
        calls += 1
        return True

    async with renewed(renew, LEASE):
        await asyncio.sleep(LEASE * 1.2)  # about three renewals
    after_block = calls
    await asyncio.sleep(LEASE)
    assert after_block >= 2
    assert calls == after_block
