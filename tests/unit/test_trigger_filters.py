"""Trigger filters, the Trigger/Broker loader and delivery specs, as Knative defines them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from eventing.broker.delivery import (
    DeliveryConfigError,
    DeliverySpec,
    is_retryable,
    parse_duration,
    retry_after_seconds,
)
from eventing.broker.triggers import (
    LOCAL_DEAD_LETTER_SINK,
    SubscriberDirectory,
    TriggerConfigError,
    knative_time,
    load_manifests,
    parse_filter_expression,
    parse_trigger_filter,
)

EVENT = {
    "specversion": "1.0",
    "id": "1",
    "source": "/victor/chat",
    "type": "ai.victor.tools.requested",
    "conversationid": "c-42",
}
DIRECTORY = SubscriberDirectory(
    {"victor-tools": "http://127.0.0.1:8002", "victor-sink": "http://127.0.0.1:9999"}
)


def matches(spec: dict[str, object], attributes: dict[str, str] = EVENT) -> bool:
    return parse_trigger_filter(spec, "Trigger t").matches(attributes)


def test_no_filter_passes_every_event() -> None:
    assert matches({}) is True
    assert matches({"filter": {}}) is True
    assert matches({"filters": []}) is True


def test_attributes_filter_needs_every_attribute_equal() -> None:
    assert matches(
        {"filter": {"attributes": {"type": "ai.victor.tools.requested", "source": "/victor/chat"}}}
    )
    assert not matches(
        {"filter": {"attributes": {"type": "ai.victor.tools.requested", "source": "/victor/x"}}}
    )
    assert not matches({"filter": {"attributes": {"type": "ai.victor.tools"}}})


def test_attributes_filter_empty_value_matches_any_value_of_a_present_attribute() -> None:
    assert matches({"filter": {"attributes": {"conversationid": ""}}})
    assert not matches({"filter": {"attributes": {"subject": ""}}})


def test_an_empty_filters_list_falls_back_to_the_attributes_filter() -> None:
    # knative/eventing pkg/broker/filter/filter_handler.go filterEvent: `len(Spec.Filters) > 0` first.
    spec = {"filter": {"attributes": {"type": "ai.victor.chat.completed"}}, "filters": []}
    assert not matches(spec)
    assert matches(spec, {**EVENT, "type": "ai.victor.chat.completed"})


@pytest.mark.parametrize(
    ("sent", "seen"),
    [
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z"),
        ("2025-12-31t23:30:00.500000000-00:30", "2026-01-01T00:00:00.5Z"),
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01T00:00:00.1234567891Z", "2026-01-01T00:00:00.123456789Z"),
    ],
)
def test_time_is_compared_as_knative_writes_it(sent: str, seen: str) -> None:
    # sdk-go v2/types/value.go FormatTime: v.UTC().Format(time.RFC3339Nano), read back by
    # knative/eventing pkg/eventfilter/attributes/filter.go LookupAttribute("time").
    event = {**EVENT, "time": sent}
    assert knative_time(sent) == seen
    assert matches({"filter": {"attributes": {"time": seen}}}, event)
    assert matches({"filters": [{"exact": {"time": seen}}]}, event)
    assert matches({"filters": [{"cesql": f"time = '{seen}'"}]}, event)
    assert matches({"filters": [{"prefix": {"time": "2026-01-01T00:00:00"}}]}, event)


def test_an_event_without_time_has_knatives_zero_time_for_the_string_filters() -> None:
    assert matches({"filter": {"attributes": {"time": ""}}})
    assert matches({"filters": [{"exact": {"time": "0001-01-01T00:00:00Z"}}]})
    assert not matches({"filters": [{"cesql": "EXISTS time"}]})


def test_exact_dialect() -> None:
    assert matches({"filters": [{"exact": {"type": "ai.victor.tools.requested"}}]})
    assert not matches({"filters": [{"exact": {"type": "ai.victor.tools.REQUESTED"}}]})
    assert not matches({"filters": [{"exact": {"subject": "x"}}]})


def test_prefix_dialect() -> None:
    assert matches({"filters": [{"prefix": {"type": "ai.victor.tools."}}]})
    assert not matches({"filters": [{"prefix": {"type": "ai.victor.chat."}}]})


def test_suffix_dialect() -> None:
    assert matches({"filters": [{"suffix": {"type": ".requested"}}]})
    assert not matches({"filters": [{"suffix": {"type": ".completed"}}]})


def test_all_dialect_needs_every_nested_expression() -> None:
    both = {"all": [{"prefix": {"type": "ai.victor."}}, {"exact": {"source": "/victor/chat"}}]}
    one = {"all": [{"prefix": {"type": "ai.victor."}}, {"exact": {"source": "/victor/tools"}}]}
    assert matches({"filters": [both]})
    assert not matches({"filters": [one]})


def test_any_dialect_needs_one_nested_expression() -> None:
    assert matches({"filters": [{"any": [{"exact": {"type": "nope"}}, {"suffix": {"type": ".requested"}}]}]})
    assert not matches({"filters": [{"any": [{"exact": {"type": "nope"}}, {"suffix": {"type": ".nope"}}]}]})


def test_not_dialect_negates_nested_expressions() -> None:
    assert not matches({"filters": [{"not": {"prefix": {"type": "ai.victor.tools"}}}]})
    nested = {"not": {"any": [{"exact": {"type": "a"}}, {"not": {"exact": {"source": "/victor/chat"}}}]}}
    assert matches({"filters": [nested]})


def test_filters_entries_are_all_required_and_override_legacy_filter() -> None:
    spec = {
        "filter": {"attributes": {"type": "something.else"}},
        "filters": [{"prefix": {"type": "ai."}}, {"exact": {"conversationid": "c-42"}}],
    }
    assert matches(spec)
    spec["filters"] = [{"prefix": {"type": "ai."}}, {"exact": {"conversationid": "c-1"}}]
    assert not matches(spec)


def test_cesql_dialect_filters_with_the_expression() -> None:
    spec = {"filters": [{"any": [{"exact": {"type": "a"}}, {"cesql": "conversationid LIKE 'c-%'"}]}]}
    assert matches(spec)
    assert not matches(spec, {**EVENT, "conversationid": "x"})
    assert not matches(spec, {k: v for k, v in EVENT.items() if k != "conversationid"})


def test_an_invalid_cesql_expression_is_refused_naming_where() -> None:
    with pytest.raises(
        TriggerConfigError,
        match=r"^Trigger t\.filters\[0\]\.any\[1\]\.cesql is not a valid CESQL expression: expected a string",
    ):
        parse_trigger_filter(
            {"filters": [{"any": [{"exact": {"type": "a"}}, {"cesql": "type LIKE 1"}]}]}, "Trigger t"
        )


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ({"exact": {"type": "a"}, "prefix": {"type": "b"}}, "exactly one dialect, found 2"),
        ({"regex": {"type": "a"}}, "unknown filter dialect 'regex'"),
        ({"exact": {"type": ""}}, "must be a non-empty string"),
        ({"any": []}, "non-empty list"),
        ({"prefix": "ai."}, "non-empty mapping"),
    ],
)
def test_malformed_filter_expressions_are_refused(expression: dict[str, object], problem: str) -> None:
    with pytest.raises(TriggerConfigError, match=problem):
        parse_filter_expression(expression, "Trigger t.filters[0]")


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "eventing.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    (tmp_path / "kustomization.yaml").write_text("resources: [eventing.yaml]\n", encoding="utf-8")
    return tmp_path


MANIFESTS = """
    apiVersion: eventing.knative.dev/v1
    kind: Broker
    metadata: {name: default, namespace: victor}
    spec:
      delivery:
        retry: 3
        backoffPolicy: exponential
        backoffDelay: PT0.5S
        deadLetterSink: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: victor-sink}}
    ---
    apiVersion: eventing.knative.dev/v1
    kind: Trigger
    metadata: {name: tools-requested}
    spec:
      broker: default
      filter: {attributes: {type: ai.victor.tools.requested}}
      subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: victor-tools}}
      delivery: {retry: 1, backoffPolicy: linear, backoffDelay: PT1S, timeout: PT2M}
    ---
    apiVersion: eventing.knative.dev/v1
    kind: Trigger
    metadata: {name: elsewhere, namespace: victor}
    spec:
      broker: another
      filters: [{cesql: "type = 'x'"}]
      subscriber: {ref: {kind: Service, name: unknown}}
    ---
    apiVersion: serving.knative.dev/v1
    kind: Service
    metadata: {name: victor-tools}
    """


def test_loader_reads_the_served_broker_and_its_triggers(tmp_path: Path) -> None:
    manifests = load_manifests(write(tmp_path, MANIFESTS), DIRECTORY, namespace="victor", broker="default")
    broker = manifests.broker("victor", "default")
    assert broker is not None
    assert broker.delivery == DeliverySpec(
        retry=3, backoff_policy="exponential", backoff_delay=0.5, dead_letter_url="http://127.0.0.1:9999"
    )
    [trigger] = manifests.triggers
    assert (trigger.namespace, trigger.name, trigger.broker) == ("victor", "tools-requested", "default")
    assert trigger.subscriber_url == "http://127.0.0.1:8002"
    assert trigger.delivery == DeliverySpec(
        retry=1, backoff_policy="linear", backoff_delay=1.0, timeout=120.0
    )
    assert trigger.filter.matches(EVENT)


def test_loader_rejects_an_invalid_cesql_expression_naming_the_trigger(tmp_path: Path) -> None:
    text = MANIFESTS.replace("broker: another", "broker: default").replace("type = 'x'", "type = ")
    with pytest.raises(
        TriggerConfigError, match=r"Trigger victor/elsewhere \(eventing.yaml\)\.filters\[0\]\.cesql is not"
    ):
        load_manifests(write(tmp_path, text), DIRECTORY, namespace="victor", broker="default")


def test_a_trigger_whose_subscriber_has_no_local_url_is_unready_and_says_which_variable_to_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = MANIFESTS.replace("name: victor-tools}}", "name: victor-chat}}", 1)
    manifests = load_manifests(write(tmp_path, text), DIRECTORY, namespace="victor", broker="default")
    assert manifests.triggers == []
    [unready] = manifests.unready
    assert (unready.namespace, unready.name) == ("victor", "tools-requested")
    assert "set VICTOR_CHAT_URL or VICTOR_SUBSCRIBER_URLS=victor-chat=" in unready.reason
    assert [r.getMessage() for r in caplog.records if "not ready" in r.getMessage()] == [
        f"{unready.reason}; this Trigger is not ready and gets no events, the others are served"
    ]


def test_uri_subscriber_is_used_as_given_and_relative_uri_joins_the_ref(tmp_path: Path) -> None:
    assert DIRECTORY.resolve({"uri": "http://example.test:81/x"}, "t") == "http://example.test:81/x"
    assert DIRECTORY.resolve({"ref": {"name": "victor-tools"}, "uri": "/hooks/a"}, "t") == (
        "http://127.0.0.1:8002/hooks/a"
    )


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TriggerConfigError, match=r"eventing.yaml line 2: not valid YAML: mapping values"):
        load_manifests(write(tmp_path, "a: 1\nb: x: y\n"), DIRECTORY, namespace="victor", broker="default")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT0.1S", 0.1),
        ("PT2M", 120.0),
        ("PT1H30M", 5400.0),
        ("P1D", 86400.0),
        ("P1DT2S", 86402.0),
        ("pt5s", 5.0),
    ],
)
def test_iso8601_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "backoffDelay") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "P", "PT", "5s", "PT-1S", "1 second"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(DeliveryConfigError, match=r"backoffDelay: .* is not an ISO-8601 duration"):
        parse_duration(text, "backoffDelay")


def test_backoff_policies() -> None:
    exponential = DeliverySpec(retry=4, backoff_policy="exponential", backoff_delay=0.1)
    linear = DeliverySpec(retry=4, backoff_policy="linear", backoff_delay=0.1)
    # Knative's delivery documentation: backoffDelay*2^<numberOfRetries>, backoffDelay*<numberOfRetries>.
    assert [exponential.backoff(n) for n in (1, 2, 3, 4)] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert [linear.backoff(n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_retry_after_counts_only_when_retry_after_max_is_set() -> None:
    opted_in = DeliverySpec(retry=1, backoff_policy="linear", backoff_delay=0.1, retry_after_max=5.0)
    assert DeliverySpec(retry=1, backoff_delay=0.1).backoff(1, retry_after=3.0) == pytest.approx(0.2)
    assert opted_in.backoff(1, retry_after=3.0) == pytest.approx(3.0)
    assert opted_in.backoff(1, retry_after=60.0) == pytest.approx(5.0)
    assert opted_in.backoff(1, retry_after=0.01) == pytest.approx(0.1)


def test_retryable_statuses_are_knatives() -> None:
    retried = [s for s in range(200, 600) if is_retryable(s)]
    assert retried == [404, 408, 409, 429, *range(500, 600)]


FUNCTION_URLS = {
    f"victor-{name}": f"http://127.0.0.1:{port}"
    for name, port in (("chat", 8001), ("tools", 8002), ("embeddings", 8003), ("health", 8004))
}


@pytest.mark.parametrize(
    ("event_type", "function"),
    [
        ("ai.victor.chat.requested", "chat"),
        ("ai.victor.tools.requested", "tools"),
        ("ai.victor.tools.completed", "chat"),
        ("ai.victor.embeddings.requested", "embeddings"),
        ("ai.victor.index.requested", "embeddings"),
        ("ai.victor.search.requested", "embeddings"),
        ("dev.knative.sources.ping", "health"),
    ],
)
def test_the_repository_triggers_route_each_event_type_to_its_function(
    event_type: str, function: str
) -> None:
    root = Path(__file__).resolve().parents[2] / "knative" / "base"
    manifests = load_manifests(root, SubscriberDirectory(FUNCTION_URLS), namespace="victor", broker="default")
    attributes = {"specversion": "1.0", "id": "1", "source": "/tests", "type": event_type}
    targets = [t.subscriber_url for t in manifests.triggers if t.filter.matches(attributes)]
    assert targets == [FUNCTION_URLS[f"victor-{function}"]]


def test_a_dead_letter_ref_without_a_local_url_uses_the_brokers_own_stream(tmp_path: Path) -> None:
    text = MANIFESTS.replace("name: victor-sink}}", "name: victor-dead-letters}}")
    manifests = load_manifests(write(tmp_path, text), DIRECTORY, namespace="victor", broker="default")
    broker = manifests.broker("victor", "default")
    assert broker is not None and broker.delivery is not None
    assert broker.delivery.dead_letter_url == LOCAL_DEAD_LETTER_SINK


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), (" 7 ", 7.0), (None, None), ("", None), ("soon", None), ("1.5", None)],
)
def test_retry_after_is_delay_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_a_retry_after_date_in_the_past_asks_for_no_wait() -> None:
    waited = retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT")
    assert waited is not None and waited < 0
