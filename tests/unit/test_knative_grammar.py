"""The broker and the manifest validator read Knative fields with one grammar: same input, same verdict."""

from __future__ import annotations

from typing import Any

import pytest

from eventing.broker.delivery import DeliveryConfigError, parse_delivery, parse_duration
from eventing.broker.triggers import TriggerConfigError, parse_filter_expression, parse_trigger_filter
from scripts.validate_manifests import broker_problems, trigger_problems

DURATIONS = {
    # Knative parses durations with rickb777/date's period: months and fractions in any field.
    "P1M": True,
    "PT0.5M": True,
    "P1Y": True,
    "P2W": True,
    "PT0.5S": True,
    "P1DT2H": True,
    "pt5s": True,
    "": False,
    "P": False,
    "PT": False,
    "5s": False,
    "500ms": False,
    "PT-1S": False,
    "-PT1S": False,
    "P1S": False,
    "1 second": False,
}


def validator_accepts_delivery(delivery: dict[str, Any]) -> bool:
    broker = {"spec": {"delivery": delivery}}
    return not list(broker_problems(broker))


def broker_accepts_delivery(delivery: dict[str, Any]) -> bool:
    try:
        parse_delivery(delivery, "Broker b", lambda destination, where: "http://sink")
    except DeliveryConfigError:
        return False
    return True


@pytest.mark.parametrize(("text", "valid"), DURATIONS.items())
def test_broker_and_validator_agree_on_each_duration(text: str, valid: bool) -> None:
    assert broker_accepts_delivery({"backoffDelay": text}) is valid
    assert validator_accepts_delivery({"backoffDelay": text}) is valid
    assert broker_accepts_delivery({"timeout": text}) is valid
    assert validator_accepts_delivery({"timeout": text}) is valid


def test_months_and_fractional_minutes_have_their_length() -> None:
    assert parse_duration("PT0.5M", "timeout") == 30.0
    assert parse_duration("P1M", "timeout") == pytest.approx(30.436875 * 86400)


@pytest.mark.parametrize(
    ("delivery", "valid"),
    [
        ({"retry": 3, "backoffPolicy": "linear"}, True),
        ({"retry": -1}, False),
        ({"retry": "3"}, False),
        ({"backoffPolicy": "random"}, False),
        ({"format": "json", "retryAfterMax": "PT2M"}, True),
        ({"format": "binary", "retryAfterMax": "PT0S"}, True),
        ({"format": "xml"}, False),
        ({"retryAfterMax": "2m"}, False),
    ],
)
def test_broker_and_validator_agree_on_delivery_blocks(delivery: dict[str, Any], valid: bool) -> None:
    assert broker_accepts_delivery(delivery) is valid
    assert validator_accepts_delivery(delivery) is valid


FILTERS: list[tuple[Any, bool]] = [
    ({"exact": {"type": "a"}}, True),
    ({"any": [{"prefix": {"type": "ai."}}, {"not": {"suffix": {"source": "x"}}}]}, True),
    ({"exact": {"type": "a"}, "prefix": {"type": "b"}}, False),
    ({"regex": {"type": "a"}}, False),
    ({"exact": {"type": ""}}, False),
    ({"exact": {"conversation_id": "a"}}, False),
    ({"exact": {"Type": "a"}}, False),
    # Go's `$` ends the text: the webhook refuses a name with a trailing newline, and so do both here.
    ({"exact": {"type\n": "a"}}, False),
    ({"prefix": {"abcdefghijklmnopqrstuvwxyz0123456789": "a"}}, True),  # no length limit in the webhook
    ({"cesql": "type LIKE 'ai.%' AND EXISTS conversationid"}, True),
    ({"cesql": "NOPE(type)"}, True),  # a missing function is an evaluation error, not a parse error
    ({"cesql": "type LIKE 1"}, False),
    ({"cesql": "4 -1"}, False),
    ({"cesql": " "}, False),
    ({"any": []}, False),
    ({"all": "x"}, False),
    ({"prefix": "ai."}, False),
    ({"not": {}}, False),
    ("exact", False),
]


@pytest.mark.parametrize(("expression", "valid"), FILTERS)
def test_broker_and_validator_agree_on_each_filter_expression(expression: Any, valid: bool) -> None:
    try:
        parse_filter_expression(expression, "Trigger t.filters[0]")
        broker_accepts = True
    except TriggerConfigError:
        broker_accepts = False
    trigger = {"spec": {"broker": "default", "filters": [expression], "subscriber": {"uri": "http://x"}}}
    assert broker_accepts is valid
    assert (not list(trigger_problems(trigger))) is valid


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ({"filter": {"attributes": {"type\n": "x"}}}, False),
        ({"filter": {"attributes": {"type": "x"}}, "filters": []}, True),
        ({"filters": {"exact": {"type": "x"}}}, False),
        ({"filter": "type=x"}, False),
    ],
)
def test_broker_and_validator_agree_on_each_trigger_filter(spec: dict[str, Any], valid: bool) -> None:
    try:
        parse_trigger_filter(spec, "spec")
        broker_problem = None
    except TriggerConfigError as exc:
        broker_problem = str(exc)
    trigger = {"spec": {"broker": "default", **spec, "subscriber": {"uri": "http://x"}}}
    validator_problems = [message for _, message in trigger_problems(trigger)]
    assert validator_problems == ([] if valid else [broker_problem])


def test_legacy_attribute_names_follow_the_same_rule_in_both() -> None:
    trigger = {
        "spec": {"broker": "default", "filter": {"attributes": {"Source": "x"}}, "subscriber": {"uri": "u"}}
    }
    assert [rule for rule, _ in trigger_problems(trigger)] == ["attribute-name"]
    with pytest.raises(TriggerConfigError, match=r"attribute 'Source' must match \^\[a-z\]\[a-z0-9\]\*\$"):
        parse_trigger_filter(trigger["spec"], "Trigger t")
