"""Trigger filters evaluated by the running broker: each event reaches exactly the matching subscribers."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

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


async def test_attributes_filter_empty_string_matches_any_non_empty_value_of_the_attribute(
    make_settings, tmp_path
) -> None:
    # knative/eventing pkg/eventfilter/attributes/filter.go: `!ok || (v == TriggerAnyFilter && value == "")`
    # fails, so chat-done (conversationid "") does not pass, and neither do the events without it.
    assert await delivered_ids(make_settings, tmp_path, filter={"conversationid": ""}) == ["tools-req"]


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


async def test_cesql_filter(make_settings, tmp_path) -> None:
    expression = "type LIKE 'ai.victor.%' AND (EXISTS conversationid OR source = '/victor/tools')"
    spec = {"filters": [{"cesql": expression}]}
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["chat-done", "tools-done", "tools-req"]


async def test_cesql_filter_with_an_evaluation_error_does_not_pass(make_settings, tmp_path) -> None:
    # conversationid is missing on two events (an error, so false) and "" on chat-done (INT('') fails too).
    spec = {"filters": [{"cesql": "INT(conversationid) = 0 OR LENGTH(conversationid) > 0"}]}
    assert await delivered_ids(make_settings, tmp_path, **spec) == []


async def test_an_empty_filters_list_falls_back_to_the_attributes_filter(make_settings, tmp_path) -> None:
    spec = {"filter": {"type": "ai.victor.tools.completed"}, "filters": []}
    assert await delivered_ids(make_settings, tmp_path, **spec) == ["tools-done"]


async def test_time_filter_compares_the_instant_in_utc_as_knative_does(make_settings, tmp_path) -> None:
    # Knative's ingress re-sends `time` as sdk-go's FormatTime writes it (v2/types/value.go:
    # v.UTC().Format(time.RFC3339Nano)); its filter compares that text (LookupAttribute, time case).
    subscriber = Subscriber()
    noon_utc = "2026-03-01T12:00:00Z"
    spec = {"filters": [{"exact": {"time": noon_utc}}]}
    async with (
        running(subscriber) as url,
        mesh(make_settings(), tmp_path, broker_manifest(), trigger_manifest("t", url, **spec)) as (
            ingress,
            broker,
        ),
    ):
        await publish(
            ingress,
            msgspec.structs.replace(event(id="same-instant-offset"), time="2026-03-01T13:00:00.000+01:00"),
            msgspec.structs.replace(event(id="same-instant-utc"), time=noon_utc),
            msgspec.structs.replace(event(id="other-instant"), time="2026-03-01T12:00:00+01:00"),
        )
        await settled(broker)
    assert sorted(r.event.id for r in subscriber.received) == ["same-instant-offset", "same-instant-utc"]


async def test_a_trigger_without_a_local_subscriber_url_is_not_ready_and_the_others_are_served(
    make_settings, tmp_path, caplog
) -> None:
    subscriber = Subscriber()
    unready = trigger_manifest("no-url", {"ref": {"kind": "Service", "name": "victor-nowhere"}})
    async with (
        running(subscriber) as url,
        mesh(make_settings(), tmp_path, broker_manifest(), unready, trigger_manifest("served", url)) as (
            ingress,
            broker,
        ),
    ):
        await publish(ingress, event(id="one"))
        await settled(broker)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(ingress.rsplit("/", 2)[0] + "/metrics")).text
    assert [r.event.id for r in subscriber.received] == ["one"]
    assert 'victor_broker_trigger_ready{trigger="no-url"} 0.0' in metrics.splitlines()
    assert 'victor_broker_trigger_ready{trigger="served"} 1.0' in metrics.splitlines()
    [line] = [r.getMessage() for r in caplog.records if "not ready" in r.getMessage()]
    assert line == (
        "Trigger victor/no-url (eventing.yaml): spec.subscriber.ref names Service 'victor-nowhere', "
        "which has no local URL; set VICTOR_SUBSCRIBER_URLS=victor-nowhere=http://host:port; "
        "this Trigger is not ready and gets no events, the others are served"
    )
