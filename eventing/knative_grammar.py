"""Knative's grammar for the Trigger and Broker fields Victor reads: durations, filters, delivery.

One definition, used by the local broker (which then builds filters and
delivery specs from what passes) and by `scripts/validate_manifests.py`
(which reports every problem of a manifest). Each check yields problems as
`(rule, message)`; the message names where the problem is.

Where Knative's webhook and the two earlier copies disagreed, Knative wins:
ISO-8601 durations take years, months, weeks, days, hours, minutes and seconds,
each may have a fraction (Knative parses them with rickb777/date's `period`,
so `P1M` and `PT0.5M` are both valid); attribute names in filters are
lowercase alphanumerics starting with a letter (the webhook's
`^[a-z][a-z0-9]*$`, matched over the whole name: no trailing newline slips
through); exact/prefix/suffix values are non-empty strings; a `cesql`
expression must parse (the webhook parses it with Knative's CESQL engine).
`trigger_filter_problems` is the one check of a Trigger's `filter` and
`filters` that both callers run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from eventing.cesql import CesqlError
from eventing.cesql import parse as parse_cesql

Problem = tuple[str, str]

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9]*")  # fullmatch: Go's $ ends the text, not a line
BACKOFF_POLICIES = ("linear", "exponential")
DELIVERY_FORMATS = ("json", "binary")

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(
    rf"^P(?!$)(?:(?P<years>{_NUMBER})Y)?(?:(?P<months>{_NUMBER})M)?(?:(?P<weeks>{_NUMBER})W)?"
    rf"(?:(?P<days>{_NUMBER})D)?"
    rf"(?:T(?=\d)(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?(?:(?P<seconds>{_NUMBER})S)?)?$"
)
# A year and a month as Knative's period library approximates them (365.2425 days; a twelfth of that).
_UNIT_SECONDS = {
    "years": 365.2425 * 86400.0,
    "months": 365.2425 * 86400.0 / 12,
    "weeks": 604800.0,
    "days": 86400.0,
    "hours": 3600.0,
    "minutes": 60.0,
    "seconds": 1.0,
}


def duration_seconds(text: Any) -> float | None:
    """Seconds in an ISO-8601 duration such as PT0.5S, PT2M, P1DT1H or P1M; None when `text` is not one.

    Letters may be in either case and surrounding blanks are ignored; signs are refused.
    """
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None:
        return None
    return float(
        sum(float(value) * _UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value)
    )


def attribute_name_problems(name: Any, where: str) -> Iterator[Problem]:
    """A CloudEvents attribute name a filter may use: lowercase alphanumerics, a letter first."""
    if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
        yield "attribute-name", f"{where} attribute {name!r} must match ^[a-z][a-z0-9]*$"


def attributes_filter_problems(attributes: Any, where: str) -> Iterator[Problem]:
    """The legacy `filter.attributes`: names to strings; "" accepts any value of a present attribute."""
    if not isinstance(attributes, Mapping):
        yield "filters", f"{where} must be a mapping of attribute names to strings"
        return
    for name, value in attributes.items():
        yield from attribute_name_problems(name, where)
        if not isinstance(value, str):
            yield "filters", f"{where}.{name} must be a string, got {value!r}"


def filter_problems(expression: Any, where: str) -> Iterator[Problem]:
    """One entry of `filters`: exactly one dialect, nested expressions checked too."""
    if not isinstance(expression, Mapping):
        yield "filters", f"{where} must be a mapping with one dialect ({', '.join(DIALECTS)})"
        return
    dialects = [key for key in expression if key in DIALECTS]
    unknown = [key for key in expression if key not in DIALECTS]
    if unknown:
        yield (
            "filters",
            f"{where} uses unknown filter dialect {unknown[0]!r}; supported: {', '.join(DIALECTS)}",
        )
    if len(dialects) != 1:
        yield (
            "one-dialect",
            f"{where} must have exactly one dialect, found {len(dialects)} ({', '.join(dialects)})",
        )
    for dialect in dialects:
        value = expression[dialect]
        here = f"{where}.{dialect}"
        if dialect in ("exact", "prefix", "suffix"):
            yield from _string_map_problems(value, here)
        elif dialect in ("all", "any"):
            if not isinstance(value, list) or not value:
                yield "filters", f"{here} must contain at least one filter expression (a non-empty list)"
                continue
            for index, nested in enumerate(value):
                yield from filter_problems(nested, f"{here}[{index}]")
        elif dialect == "not":
            yield from filter_problems(value, here)
        elif not isinstance(value, str) or not value.strip():
            yield "filters", f"{here} must be a non-empty CESQL expression"
        else:
            try:
                parse_cesql(value)
            except CesqlError as exc:
                yield "cesql", f"{here} is not a valid CESQL expression: {exc.message}"


def trigger_filter_problems(spec: Mapping[str, Any], where: str) -> Iterator[Problem]:
    """A Trigger spec's `filter.attributes` and `filters`, each entry checked as the webhook does."""
    legacy = spec.get("filter")
    if legacy is not None and not isinstance(legacy, Mapping):
        yield "filters", f"{where}.filter must be a mapping with attributes"
    elif legacy is not None and legacy.get("attributes") is not None:
        yield from attributes_filter_problems(legacy["attributes"], f"{where}.filter.attributes")
    filters = spec.get("filters")
    if filters is not None and not isinstance(filters, list):
        yield "filters", f"{where}.filters must be a list of filter expressions"
        return
    for index, expression in enumerate(filters or []):
        yield from filter_problems(expression, f"{where}.filters[{index}]")


def _string_map_problems(value: Any, where: str) -> Iterator[Problem]:
    if not isinstance(value, Mapping) or not value:
        yield "filters", f"{where} must be a non-empty mapping of attribute names to strings"
        return
    for name, wanted in value.items():
        yield from attribute_name_problems(name, where)
        if not isinstance(wanted, str) or wanted == "":
            yield "filters", f"{where}.{name} must be a non-empty string, got {wanted!r}"


def delivery_problems(delivery: Any, where: str) -> Iterator[Problem]:
    """A `delivery` block: retry a whole number >= 0, a known backoffPolicy and format, ISO-8601 durations.

    The deadLetterSink destination is checked by whoever resolves it.
    """
    if not isinstance(delivery, Mapping):
        yield "delivery", f"{where} must be a mapping"
        return
    retry = delivery.get("retry", 0)
    if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
        yield "delivery", f"{where}.retry={retry!r} must be a whole number >= 0"
    for key in ("backoffDelay", "timeout", "retryAfterMax"):
        if key in delivery and duration_seconds(delivery[key]) is None:
            yield "delivery", f"{where}.{key}={delivery[key]!r} is not an ISO 8601 duration such as PT0.5S"
    policy = delivery.get("backoffPolicy")
    if policy is not None and policy not in BACKOFF_POLICIES:
        yield "delivery", f"{where}.backoffPolicy={policy!r} must be linear or exponential"
    event_format = delivery.get("format")
    if event_format is not None and event_format not in DELIVERY_FORMATS:
        yield "delivery", f"{where}.format={event_format!r} must be json or binary"
