"""Trigger filters evaluated by the running broker: each event reaches exactly the matching subscribers."""

from __future__ import annotations

from typing import Any

from tests.support.broker import Subscriber, broker_manifest, event, mesh, publish, settled, trigger_manifest
from tests.support.servers import running

# (id, type, source, extensions) of the events every test publishes.
EVENTS = [
    ("tools-req", "ai.victor.tools.requested", "/victor/chat", {"conversationid": "c-1"}),
    ("tools-done", "ai.victor.tools.completed", "/victor/tools", {}),
    ("chat-done", "ai.victor.chat.completed", "/victor/chat", {"conversationid": ""}),
    ("ping", "dev.knative.sources.ping", "/apis/v1/namespaces/victor/pingsources/health", {}),
]


async def delivered_ids(make_settings: Any, tmp_path: Any, **filter_spec: Any) -> list[str]:
    """The ids one Trigger with this filter receives out of EVENTS."""
    subscriber = Subscriber()
    async with (
        running(subscriber) as url,
        mesh(
            make_settings(), tmp_path, broker_manifest(), trigger_manifest("under-test", url, **filter_spec)
        ) as (ingress, broker),
    ):
        await publish(
            ingress,
            *(event(type, id=id, source=source, extensions=ext) for id, type, source, ext in EVENTS),
        )
        await settled(broker)
    return sorted(r.event.id for r in subscriber.received)


async def test_without_a_filter_every_event_is_delivered(make_settings, tmp_path) -> None:
    assert await delivered_ids(make_settings, tmp_path) == ["chat-done", "ping", "tools-done", "tools-req"]


async def test_attributes_filter_exact_match(make_settings, tmp_path) -> None:
    spec = {"filter": {"type": "ai.victor.tools.requested", "source": "/victor/chat"}}
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["tools-req"]


async def test_attributes_filter_empty_string_matches_any_value_but_needs_the_attribute(
    make_settings, tmp_path
) -> None:
    assert await delivered_ids(make_settings, tmp_path, filter={"conversationid": ""}) == [
        "chat-done",
        "tools-req",
    ]


async def test_exact_filter(make_settings, tmp_path) -> None:
    spec = {"filters": [{"exact": {"type": "ai.victor.tools.completed"}}]}
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["tools-done"]


async def test_prefix_filter(make_settings, tmp_path) -> None:
    spec = {"filters": [{"prefix": {"type": "ai.victor.tools."}}]}
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["tools-done", "tools-req"]


async def test_suffix_filter(make_settings, tmp_path) -> None:
    spec = {"filters": [{"suffix": {"type": ".completed"}}]}
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["chat-done", "tools-done"]


async def test_all_filter(make_settings, tmp_path) -> None:
    spec = {"filters": [{"all": [{"prefix": {"type": "ai.victor."}}, {"exact": {"source": "/victor/chat"}}]}]}
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["chat-done", "tools-req"]


async def test_any_filter(make_settings, tmp_path) -> None:
    spec = {
        "filters": [
            {"any": [{"exact": {"type": "dev.knative.sources.ping"}}, {"suffix": {"type": ".requested"}}]}
        ]
    }
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["ping", "tools-req"]


async def test_not_filter_with_nested_expressions(make_settings, tmp_path) -> None:
    spec = {
        "filters": [{"not": {"any": [{"prefix": {"type": "ai.victor.tools."}}, {"exact": {"id": "ping"}}]}}]
    }
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["chat-done"]


async def test_filters_override_the_legacy_filter(make_settings, tmp_path) -> None:
    spec = {"filter": {"type": "ai.victor.chat.completed"}, "filters": [{"exact": {"id": "ping"}}]}
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["ping"]


async def test_triggers_of_other_brokers_are_ignored(make_settings, tmp_path) -> None:
    ours, theirs = Subscriber(), Subscriber()
    async with (
        running(ours) as ours_url,
        running(theirs) as theirs_url,
        mesh(
            make_settings(),
            tmp_path,
            broker_manifest(),
            trigger_manifest("ours", ours_url),
            trigger_manifest("theirs", theirs_url, broker="another"),
        ) as (ingress, broker),
    ):
        await publish(ingress, event(id="only"))
        await settled(broker)
    assert [r.event.id for r in ours.received] == ["only"]
    assert theirs.received == []
