"""CESQL v1, as the `cesql` filter dialect evaluates it: the spec's conformance TCK, case by case.

The TCK files (tests/fixtures/cesql_tck, copied from cloudevents/spec; see SOURCES.md there) give an
expression, an optional event, the result and the error kind. Each case runs here as one test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from eventing.cesql import CesqlError, parse

TCK = Path(__file__).parent.parent / "fixtures" / "cesql_tck"
# A full event for cases without one, as the TCK README allows ("any valid event").
FULL_EVENT = {
    "specversion": "1.0",
    "id": "full-event",
    "source": "http://localhost/source",
    "type": "com.example.full",
    "subject": "topic",
    "time": "2018-04-26T12:48:09Z",
    "datacontenttype": "application/json",
    "dataschema": "http://localhost/schema",
}
# Where Knative's engine (sdk-go sql/v2) and the spec's TCK differ; see SOURCES.md.
KNATIVE_ENGINE = {("Not operator", "Invalid int cast"): (False, None)}


class TypedLoader(yaml.SafeLoader):
    """YAML's types for results and attribute values, except timestamps: the TCK means them as strings."""


TypedLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def cases() -> list[Any]:
    found = []
    for file in sorted(TCK.glob("*.yaml")):
        text = file.read_text(encoding="utf-8")
        # Expressions as written (`TRUE`, `-10`): the raw scalars; everything else typed.
        raw = yaml.load(text, Loader=yaml.BaseLoader)["tests"]  # noqa: S506 (BaseLoader builds only strings)
        suite = yaml.load(text, Loader=TypedLoader)  # noqa: S506 (a SafeLoader)
        for case, written in zip(suite["tests"], raw, strict=True):
            case = {**case, "expression": written["expression"]}
            found.append(pytest.param(suite["name"], case, id=f"{file.stem}: {case['name']}"))
    return found


@pytest.mark.parametrize(("suite", "case"), cases())
def test_tck_case(suite: str, case: dict[str, Any]) -> None:
    if case.get("error") == "parse":
        with pytest.raises(CesqlError) as raised:
            parse(case["expression"])
        assert raised.value.kind == "parse"
        return
    event = {**(case.get("event") or FULL_EVENT), **(case.get("eventOverrides") or {})}
    value, error = parse(case["expression"]).result(event)
    expected = KNATIVE_ENGINE.get((suite, case["name"]), (case.get("result"), case.get("error")))
    assert (value, error) == expected
    assert type(value) is type(expected[0])


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        # AND, OR and XOR share one precedence and group to the right (the grammar's <assoc=right>).
        ("FALSE AND FALSE OR TRUE", False),
        ("TRUE OR FALSE AND FALSE", True),
        ("TRUE XOR TRUE XOR TRUE", True),
        # LIKE and IN bind tighter than comparison; NOT binds tighter than all of them.
        ("NOT FALSE = TRUE", True),
        ("1 + 2 * 3 = 7", True),
        ("-2147483648 - 1", 2147483647),
        ("-2147483648 / -1", -2147483648),
        ("-7 % 3", -1),
        ("-7 / 2", -3),
        ("LENGTH('héllo')", 5),
        ("'é' LIKE '_'", True),
        ("TRIM('\u00a0x\u2003')", "x"),
        ("IS_INT('12') AND NOT IS_INT('1.5') AND IS_BOOL('False')", True),
        ("CONCAT_WS('-', 1, TRUE)", "1-true"),
        ("SUBSTRING('abcdef', -3, 2)", "de"),
        ("Type = 'com.example.full' AND exists SUBJECT", True),
    ],
)
def test_engine_rules_beyond_the_tck(expression: str, result: object) -> None:
    assert parse(expression).result(FULL_EVENT) == (result, None)


@pytest.mark.parametrize(
    "expression",
    [
        "4 -1",
        "2147483648",
        "type = ",
        "type LIKE type",
        "EXISTS 'x'",
        "(1",
        "a.b = 1",
        "x IN ()",
        "f(1,)",
        "",
    ],
)
def test_malformed_expressions_are_parse_errors(expression: str) -> None:
    with pytest.raises(CesqlError) as raised:
        parse(expression)
    assert raised.value.kind == "parse"


def test_a_filter_passes_only_a_true_result_without_error() -> None:
    assert parse("type LIKE 'com.%'").matches(FULL_EVENT)
    assert not parse("'com'").matches(FULL_EVENT)  # a String is not true
    assert not parse("1").matches(FULL_EVENT)
    assert not parse("missing = 'x' OR TRUE").matches(FULL_EVENT)  # the error wins, even under OR
    assert not parse("SUBSTRING(type, 1, -1) = ''").matches(FULL_EVENT)
    assert not parse("NOPE(type)").matches(FULL_EVENT)


def test_a_long_and_or_chain_is_evaluated_without_recursion() -> None:
    chain = " OR ".join(["type = 'nope'"] * 5000 + ["type = 'com.example.full'"])
    assert parse(chain).result(FULL_EVENT) == (True, None)
    assert parse(chain.replace(" OR ", " AND ", 1)).result(FULL_EVENT) == (False, None)


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 300 + "1" + ")" * 300,
        "NOT " * 300 + "TRUE",
        " + ".join(["1"] * 300),
        "ABS(" * 300 + "1" + ")" * 300,
    ],
)
def test_expressions_nested_deeper_than_the_limit_are_parse_errors(expression: str) -> None:
    with pytest.raises(CesqlError, match="nests deeper than 200 levels") as raised:
        parse(expression)
    assert raised.value.kind == "parse"
