"""Replies re-enter the broker: routed by other Triggers, with knativebrokerttl as the loop guard."""

from __future__ import annotations

from tests.support.broker import (
    Reply,
    Subscriber,
    broker_manifest,
    event,
    mesh,
    publish,
    replying,
    routed,
    settled,
    stored_events,
    trigger_manifest,
)
from tests.support.servers import running


async def test_a_reply_event_is_routed_by_a_second_trigger(make_settings, tmp_path) -> None:
    worker, audit = replying("ai.victor.tools.completed"), Subscriber()
    async with (
        running(worker) as worker_url,
        running(audit) as audit_url,
        mesh(
            make_settings(),
            tmp_path,
            broker_manifest(),
            trigger_manifest(
                "requests",
                {"ref": {"kind": "Service", "name": "victor-tools"}},
                filter={"type": "ai.victor.tools.requested"},
            ),
            trigger_manifest(
                "completions",
                {"ref": {"kind": "Service", "name": "victor-audit"}, "uri": "/events"},
                filter={"type": "ai.victor.tools.completed"},
            ),
            VICTOR_SUBSCRIBER_URLS=f"victor-tools={worker_url},victor-audit={audit_url}",
        ) as (ingress, broker),
    ):
        await publish(ingress, event("ai.victor.tools.requested", id="req-1"))
        [routed] = await audit.wait_for(1)
        await settled(broker)
        stored = {e.id: e.extensions["knativebrokerttl"] for e in await stored_events(broker)}
    assert routed.path == "/events"
    reply = routed.event
    assert (reply.id, reply.type, reply.subject) == ("reply-to-req-1", "ai.victor.tools.completed", "req-1")
    assert "knativebrokerttl" not in reply.extensions
    assert stored == {"req-1": "255", "reply-to-req-1": "254"}
    assert [r.event.id for r in worker.received] == ["req-1"]
    assert len(audit.received) == 1


async def test_a_reply_loop_is_cut_when_the_ttl_reaches_zero(make_settings, tmp_path) -> None:
    # Replies have the type of what they answer, so the Trigger matches its own replies forever.
    echo = Subscriber(respond=lambda e: Reply(200, event=event(e.type, id=f"{e.id}+")))
    async with (
        running(echo) as url,
        routed(make_settings(), tmp_path, {"loop": url}) as (ingress, broker),
    ):
        # Knative's ingress decrements: 3 is stored as 2, the reply as 1, the reply's reply is refused.
        await publish(ingress, event(id="spin", extensions={"knativebrokerttl": "3"}))
        await echo.wait_for(2)
        await settled(broker)
        stored = [(e.id, e.extensions["knativebrokerttl"]) for e in await stored_events(broker)]
    assert [r.event.id for r in echo.received] == ["spin", "spin+"]
    assert stored == [("spin", "2"), ("spin+", "1")]


async def test_an_event_without_a_ttl_gets_255(make_settings, tmp_path) -> None:
    echo = Subscriber(script=[Reply(200, event=event("ai.victor.second", id="second"))])
    async with (
        running(echo) as url,
        routed(make_settings(), tmp_path, {"all": url}) as (ingress, broker),
    ):
        await publish(ingress, event(id="first"))
        await echo.wait_for(2)
        await settled(broker)
        stored = [(e.id, e.extensions["knativebrokerttl"]) for e in await stored_events(broker)]
    assert stored == [("first", "255"), ("second", "254")]
