"""A chat step's LLM call is claimed with a lease its holder renews while the model answers.

A replica that is killed mid-call stops renewing, so its claim lapses within one lease and the
broker's retry of the step takes the call over (the broker's default retries span 63 s); a call
that takes longer than the lease keeps its claim, so no other replica calls the model for it.
Checked against real PostgreSQL, with the chat function's own migrations applied.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from common.lease import renewed
from common.store import Store, StoreUnavailable
from functions.chat.conversation_store import ConversationStore
from tests.support.chat import chat_function, chat_settings
from tests.support.foundation import unique

LEASE = 0.6


async def test_a_renewed_claim_is_kept_past_its_lease_and_a_dead_holders_lapses_within_one(
    make_settings,
) -> None:
    async with chat_function(make_settings, chat_settings()) as (_, settings):  # applies the migrations
        store = Store(settings.database_dsn)
        try:
            conversations = ConversationStore(store)
            conversation_id, request_id = unique("lease"), unique("lease-request")
            begun = await conversations.begin(  # records the request and claims its first call
                conversation_id=conversation_id,
                request_id=request_id,
                message="hello",
                provider="anthropic",
                model="claude-sonnet-5-5",
                max_tokens=100,
                system=None,
                stream=False,
            )
            claim = functools.partial(conversations.claim_llm, conversation_id, request_id, 0, LEASE)
            renew = functools.partial(conversations.renew_llm, conversation_id, request_id, 0)
            taken_while_held = await claim()
            async with renewed(renew, LEASE):  # the holder answers for 4 leases
                await asyncio.sleep(LEASE * 4)
                taken_while_renewed = await claim()
            # The holder is gone (no more renewals): within one lease the call is free again.
            await asyncio.sleep(LEASE * 1.5)
            taken_after_lapse = await claim()
            await conversations.release_llm(conversation_id, 0)
            renewed_after_release = await renew()
        finally:
            await store.close()
    assert begun.state == "new"
    assert (taken_while_held, taken_while_renewed, taken_after_lapse) == (False, False, True)
    assert renewed_after_release is False


async def test_a_closed_store_makes_no_new_pool(make_settings) -> None:
    store = Store(make_settings().database_dsn)
    pool = await store.pool()
    assert await pool.fetchval("SELECT 1") == 1
    await store.close()
    with pytest.raises(StoreUnavailable) as refused:  # a renewal still running at shutdown, say
        await store.pool()
    assert str(refused.value) == "PostgreSQL's pool is closed: the function is stopping"
