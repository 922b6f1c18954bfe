"""Brokers and Triggers read from the Knative YAML in `knative/`, and Trigger filters.

The local broker serves the same Trigger objects a cluster applies. A Trigger's
`filters` (the subscriptions API: exact, prefix, suffix, all, any, not) wins
over its legacy `filter.attributes`, as in Knative. A dialect the broker cannot
evaluate (cesql) or a malformed object is a `TriggerConfigError` at start-up
naming the Trigger, never a Trigger silently ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

import yaml

from common.settings import FUNCTION_NAMES
from eventing.broker.delivery import DeliveryConfigError, DeliverySpec, parse_delivery
from eventing.knative_grammar import (
    SUPPORTED_DIALECTS,
    Problem,
    attributes_filter_problems,
    filter_problems,
)

log = logging.getLogger(__name__)
EVENTING_GROUP = "eventing.knative.dev/"
# Not a URL: a deadLetterSink `ref` with no local URL sends dead letters to the broker's own
# Redis stream (`<stream>:dead-letters`), so the cluster's manifests run locally unchanged.
LOCAL_DEAD_LETTER_SINK = "victor-broker:dead-letters"
FUNCTION_SERVICES = {f"victor-{name}": name for name in FUNCTION_NAMES}


class TriggerConfigError(ValueError):
    """A Broker or Trigger manifest the local broker cannot serve; the message names it."""


# ---------------------------------------------------------------- filters


class TriggerFilter(Protocol):
    def matches(self, attributes: Mapping[str, str]) -> bool:
        """Whether an event with these context attributes and extensions passes."""
        ...


@dataclass(frozen=True)
class AttributesFilter:
    """Legacy `filter.attributes`: every attribute present and equal; "" accepts any value."""

    attributes: Mapping[str, str]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        for name, wanted in self.attributes.items():
            value = attributes.get(name)
            if value is None or (wanted != "" and value != wanted):
                return False
        return True


@dataclass(frozen=True)
class StringFilter:
    """exact / prefix / suffix: every named attribute present and comparing true."""

    dialect: str
    attributes: Mapping[str, str]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        for name, wanted in self.attributes.items():
            value = attributes.get(name)
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
    return _build_filter(expression, where)


def _build_filter(expression: Mapping[str, Any], where: str) -> TriggerFilter:
    [(dialect, value)] = expression.items()
    here = f"{where}.{dialect}"
    if dialect == "cesql":
        raise TriggerConfigError(
            f"{here}: the cesql dialect is not supported by the local broker; "
            f"use {', '.join(SUPPORTED_DIALECTS)}"
        )
    if dialect in ("exact", "prefix", "suffix"):
        return StringFilter(dialect, dict(value))
    if dialect == "not":
        return NotFilter(_build_filter(value, here))
    nested = [_build_filter(item, f"{here}[{i}]") for i, item in enumerate(value)]
    return AllFilter(nested) if dialect == "all" else AnyFilter(nested)


def parse_trigger_filter(spec: Mapping[str, Any], where: str) -> TriggerFilter:
    """The Trigger's filter: `filters` when present (Knative lets it override `filter`), else `filter`."""
    filters = spec.get("filters")
    if filters is not None:
        if not isinstance(filters, list):
            raise TriggerConfigError(f"{where}.filters must be a list of filter expressions")
        return AllFilter(
            [parse_filter_expression(item, f"{where}.filters[{i}]") for i, item in enumerate(filters)]
        )
    legacy = spec.get("filter")
    if legacy is None:
        return PASS_ALL
    attributes = legacy.get("attributes") if isinstance(legacy, Mapping) else None
    if attributes is None:
        return PASS_ALL
    _refuse_problems(attributes_filter_problems(attributes, f"{where}.filter.attributes"))
    if not attributes:
        return PASS_ALL
    return AttributesFilter(dict(attributes))


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
            raise TriggerConfigError(
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
class Manifests:
    brokers: list[BrokerConfig]
    triggers: list[Trigger]

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
    except TriggerConfigError:
        if not (isinstance(destination, Mapping) and isinstance(destination.get("ref"), Mapping)):
            raise
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
    """
    default_namespace = namespace
    brokers: list[BrokerConfig] = []
    triggers: list[Trigger] = []
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
        triggers.append(
            Trigger(
                namespace=object_namespace,
                name=name,
                broker=broker,
                filter=parse_trigger_filter(spec, where),
                subscriber_url=directory.resolve(spec["subscriber"], f"{where}: spec.subscriber"),
                delivery=delivery,
            )
        )
    return Manifests(brokers, triggers)
