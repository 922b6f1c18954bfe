"""Brokers and Triggers read from the Knative YAML in `knative/`, and Trigger filters.

The local broker serves the same Trigger objects a cluster applies. A Trigger's
`filters` (the subscriptions API: exact, prefix, suffix, all, any, not, cesql)
wins over its legacy `filter.attributes` when it has entries, as in Knative.
An object Knative's webhook would refuse is a `TriggerConfigError` at start-up
naming the Trigger, never a Trigger silently ignored. A Trigger whose subscriber
has no local URL is what Knative keeps not ready: it is logged, listed in
`Manifests.unready` and gets no events, while the other Triggers are served.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

import yaml

from common.settings import FUNCTION_NAMES
from eventing import cesql
from eventing.broker.delivery import DeliveryConfigError, DeliverySpec, parse_delivery
from eventing.knative_grammar import Problem, filter_problems, trigger_filter_problems

log = logging.getLogger(__name__)
EVENTING_GROUP = "eventing.knative.dev/"
# Not a URL: a deadLetterSink `ref` with no local URL sends dead letters to the broker's own
# Redis stream (`<stream>:dead-letters`), so the cluster's manifests run locally unchanged.
LOCAL_DEAD_LETTER_SINK = "victor-broker:dead-letters"
FUNCTION_SERVICES = {f"victor-{name}": name for name in FUNCTION_NAMES}


class TriggerConfigError(ValueError):
    """A Broker or Trigger manifest the local broker cannot serve; the message names it."""


class NoLocalURL(TriggerConfigError):
    """A destination `ref` names an object with no local URL (in a cluster: not resolved yet)."""


# ---------------------------------------------------------------- filters

# What Knative's filters read for an event's context attributes: LookupAttribute in knative/eventing
# pkg/eventfilter/attributes/filter.go. The standard attributes are always "present" (an absent
# optional one reads ""), `time` is the event's time as sdk-go writes it and an absent `time` the zero
# time; `schemaurl`, `datamediatype` and `datacontentencoding` are derived names.
KNATIVE_ZERO_TIME = "0001-01-01T00:00:00Z"
_STANDARD = ("specversion", "type", "source", "subject", "id", "dataschema", "datacontenttype")
_OPTIONAL = ("subject", "dataschema", "datacontenttype", "time")
_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|([+-])(\d{2}):(\d{2}))"
)


def knative_time(text: str) -> str:
    """An event's `time` as Knative's filters compare it: the instant in UTC, RFC3339Nano.

    Knative's ingress parses `time` and sends it on with sdk-go's `types.FormatTime`
    (`v.UTC().Format(time.RFC3339Nano)`, sdk-go v2/types/value.go), so the filter
    sees `2026-01-01T00:00:00Z` for an event sent with `2026-01-01T01:00:00.000+01:00`:
    UTC, "Z", the fraction without trailing zeros (none when zero). Text that is not an
    RFC 3339 timestamp is returned as it is.
    """
    match = _TIME.fullmatch(text)
    if match is None:
        return text
    year, month, day, hour, minute, second, fraction, _zone, sign, zone_hours, zone_minutes = match.groups()
    offset = timedelta(hours=int(zone_hours or 0), minutes=int(zone_minutes or 0))
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        ) - (offset if sign == "+" else -offset)
    except (ValueError, OverflowError):
        return text
    digits = (fraction or "")[:9].rstrip("0")
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}{'.' + digits if digits else ''}Z"
    )


def lookup_attribute(attributes: Mapping[str, str], name: str) -> str | None:
    """The value Knative's attributes, exact, prefix and suffix filters compare; None when absent."""
    if name == "time":
        time = attributes.get("time")
        return KNATIVE_ZERO_TIME if time is None else knative_time(time)
    if name == "schemaurl":
        name = "dataschema"
    if name == "datamediatype":
        return attributes.get("datacontenttype", "").split(";", 1)[0].strip()
    if name == "datacontentencoding":
        return ""
    if name in _STANDARD:
        return attributes.get(name, "")
    return attributes.get(name)


def cesql_attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    """The attributes a CESQL expression addresses (sdk-go sql/v2 utils.GetAttribute): an empty optional
    attribute is missing, `time` is formatted as Knative's ingress sends it."""
    view = {k: v for k, v in attributes.items() if v != "" or k not in _OPTIONAL}
    if "time" in view:
        view["time"] = knative_time(view["time"])
    return view


class TriggerFilter(Protocol):
    def matches(self, attributes: Mapping[str, str]) -> bool:
        """Whether an event with these context attributes and extensions passes."""
        ...


@dataclass(frozen=True)
class AttributesFilter:
    """Legacy `filter.attributes`: every attribute present and equal; "" accepts any non-empty value."""

    attributes: Mapping[str, str]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        for name, wanted in self.attributes.items():
            value = lookup_attribute(attributes, name)
            if value is None or (wanted == "" and value == "") or (wanted != "" and value != wanted):
                return False
        return True


@dataclass(frozen=True)
class StringFilter:
    """exact / prefix / suffix: every named attribute present and comparing true."""

    dialect: str
    attributes: Mapping[str, str]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        for name, wanted in self.attributes.items():
            value = lookup_attribute(attributes, name)
            if value is None:
                return False
            if self.dialect == "exact" and value != wanted:
                return False
            if self.dialect == "prefix" and not value.startswith(wanted):
                return False
            if self.dialect == "suffix" and not value.endswith(wanted):
                return False
        return True


@dataclass(frozen=True)
class CesqlFilter:
    """cesql: the expression is true for the event, without error (eventing/cesql.py)."""

    expression: cesql.Expression

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return self.expression.matches(cesql_attributes(attributes))


@dataclass(frozen=True)
class AllFilter:
    filters: Sequence[TriggerFilter]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return all(f.matches(attributes) for f in self.filters)


@dataclass(frozen=True)
class AnyFilter:
    filters: Sequence[TriggerFilter]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return any(f.matches(attributes) for f in self.filters)


@dataclass(frozen=True)
class NotFilter:
    filter: TriggerFilter

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return not self.filter.matches(attributes)


PASS_ALL: TriggerFilter = AllFilter(())


def _refuse_problems(problems: Iterator[Problem]) -> None:
    """Raise the first problem Knative's grammar found, as the broker's one-line start-up error."""
    for _rule, message in problems:
        raise TriggerConfigError(message)


def parse_filter_expression(expression: Any, where: str) -> TriggerFilter:
    """One entry of `filters` (exactly one dialect), nested expressions included."""
    _refuse_problems(filter_problems(expression, where))
    return _build_filter(expression)


def _build_filter(expression: Mapping[str, Any]) -> TriggerFilter:
    [(dialect, value)] = expression.items()
    if dialect == "cesql":
        return CesqlFilter(cesql.parse(value))
    if dialect in ("exact", "prefix", "suffix"):
        return StringFilter(dialect, dict(value))
    if dialect == "not":
        return NotFilter(_build_filter(value))
    nested = [_build_filter(item) for item in value]
    return AllFilter(nested) if dialect == "all" else AnyFilter(nested)


def parse_trigger_filter(spec: Mapping[str, Any], where: str) -> TriggerFilter:
    """The Trigger's filter, chosen as Knative's filter handler does.

    knative/eventing pkg/broker/filter/filter_handler.go `filterEvent`: `filters` when it
    has entries (all must pass), else `filter.attributes`, else every event passes. So an
    empty `filters: []` is "not set" and the attributes filter beside it applies.
    """
    _refuse_problems(trigger_filter_problems(spec, where))
    filters = spec.get("filters") or []
    if filters:
        return AllFilter([_build_filter(item) for item in filters])
    attributes = (spec.get("filter") or {}).get("attributes")
    return AttributesFilter(dict(attributes)) if attributes else PASS_ALL


# ---------------------------------------------------------------- manifests


@dataclass(frozen=True)
class SubscriberDirectory:
    """Local URLs for Kubernetes objects a Trigger may name as subscriber or dead-letter sink.

    `urls` maps an object name (e.g. `victor-chat`) to its base URL.
    """

    urls: Mapping[str, str]

    def resolve(self, destination: Any, where: str) -> str:
        """The URL of a Knative destination: `uri` as given, or `ref` (with a relative `uri` joined)."""
        if not isinstance(destination, Mapping):
            raise TriggerConfigError(f"{where} must be a mapping with ref or uri")
        ref = destination.get("ref")
        uri = destination.get("uri")
        if ref is None:
            if not isinstance(uri, str) or "://" not in uri:
                raise TriggerConfigError(f"{where} needs a ref or an absolute uri")
            return uri
        if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
            raise TriggerConfigError(f"{where}.ref must name an object (kind, name)")
        name = ref["name"]
        base = self.urls.get(name)
        if base is None:
            function = FUNCTION_SERVICES.get(name)
            hint = f"VICTOR_{function.upper()}_URL or " if function else ""
            raise NoLocalURL(
                f"{where}.ref names {ref.get('kind', 'Service')} {name!r}, which has no local URL; "
                f"set {hint}VICTOR_SUBSCRIBER_URLS={name}=http://host:port"
            )
        if isinstance(uri, str) and uri:
            return urljoin(base.rstrip("/") + "/", uri.lstrip("/"))
        return base


@dataclass(frozen=True)
class BrokerConfig:
    namespace: str
    name: str
    delivery: DeliverySpec | None = None


@dataclass(frozen=True)
class Trigger:
    namespace: str
    name: str
    broker: str
    filter: TriggerFilter
    subscriber_url: str
    delivery: DeliverySpec | None = None


@dataclass(frozen=True)
class UnreadyTrigger:
    """A Trigger Knative would keep not ready (its subscriber does not resolve); `reason` says why."""

    namespace: str
    name: str
    reason: str


@dataclass(frozen=True)
class Manifests:
    brokers: list[BrokerConfig]
    triggers: list[Trigger]
    unready: list[UnreadyTrigger] = field(default_factory=list)

    def broker(self, namespace: str, name: str) -> BrokerConfig | None:
        return next((b for b in self.brokers if b.namespace == namespace and b.name == name), None)


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TriggerConfigError(f"VICTOR_TRIGGERS_PATH: {path} is neither a YAML file nor a directory")
    return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _documents(files: Iterable[Path]) -> Iterable[tuple[Path, dict[str, Any]]]:
    for file in files:
        try:
            documents = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise TriggerConfigError(
                f"{file}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"
            ) from None
        for document in documents:
            if isinstance(document, dict):
                yield file, document


def _dead_letter_url(directory: SubscriberDirectory, destination: Any, where: str) -> str:
    try:
        return directory.resolve(destination, where)
    except NoLocalURL:
        log.warning(
            "%s: %s has no local URL; dead letters go to the broker's Redis stream <stream>:dead-letters",
            where,
            destination["ref"].get("name"),
        )
        return LOCAL_DEAD_LETTER_SINK


def load_manifests(
    path: Path | str, directory: SubscriberDirectory, *, namespace: str, broker: str
) -> Manifests:
    """The Brokers, and the Triggers of Broker `namespace/broker`, in a YAML file or directory tree.

    Objects without a namespace take `namespace`, as kustomize's `namespace:`
    would give them. Triggers of other Brokers are skipped before their
    subscribers are resolved; other kinds (Services, kustomizations) are skipped.
    A Trigger whose subscriber `ref` has no local URL is logged (one line) and listed
    in `unready`, as Knative keeps it not ready while it serves the other Triggers.
    """
    default_namespace = namespace
    brokers: list[BrokerConfig] = []
    triggers: list[Trigger] = []
    unready: list[UnreadyTrigger] = []
    for file, document in _documents(_yaml_files(Path(path))):
        api_version = str(document.get("apiVersion", ""))
        kind = document.get("kind")
        if not api_version.startswith(EVENTING_GROUP) or kind not in ("Broker", "Trigger"):
            continue
        metadata = document.get("metadata") or {}
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise TriggerConfigError(f"{file}: a {kind} has no metadata.name")
        object_namespace = metadata.get("namespace") or default_namespace
        where = f"{kind} {object_namespace}/{name} ({file.name})"
        spec = document.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise TriggerConfigError(f"{where}: spec must be a mapping")
        if kind == "Trigger" and (spec.get("broker") != broker or object_namespace != default_namespace):
            continue
        try:
            delivery = parse_delivery(
                spec.get("delivery"), where, lambda d, w: _dead_letter_url(directory, d, w)
            )
        except DeliveryConfigError as exc:
            raise TriggerConfigError(str(exc)) from None
        if kind == "Broker":
            brokers.append(BrokerConfig(object_namespace, name, delivery))
            continue
        if "subscriber" not in spec:
            raise TriggerConfigError(f"{where}: spec.subscriber is required")
        trigger_filter = parse_trigger_filter(spec, where)
        try:
            subscriber_url = directory.resolve(spec["subscriber"], f"{where}: spec.subscriber")
        except NoLocalURL as exc:
            log.warning("%s; this Trigger is not ready and gets no events, the others are served", exc)
            unready.append(UnreadyTrigger(object_namespace, name, str(exc)))
            continue
        triggers.append(Trigger(object_namespace, name, broker, trigger_filter, subscriber_url, delivery))
    return Manifests(brokers, triggers, unready)
