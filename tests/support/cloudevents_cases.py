"""The CloudEvents conformance cases, as HTTP requests, and an echo variant of the health function.

Cases come from tests/fixtures/cloudevents-conformance, copied from the CloudEvents
conformance repository (see its SOURCES.md), loaded
with YAML BaseLoader so `specversion: 1.0` stays a string). `to_request`
writes a case in binary or structured mode exactly as the HTTP binding says.

`ECHO_SPEC` is the health function plus one handler for the conformance event
types that replies with what it parsed (attributes and data), so a test can
see the parse through real HTTP. `echo_handle` serves it under
functions-framework: `--source tests/support/cloudevents_cases.py --target echo_handle`.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from common.cloudevents import STRUCTURED, CloudEvent, new_event, percent_encode
from common.framework_target import target
from common.runtime import Runtime
from functions.health.function import FUNCTION as SPEC

CONFORMANCE = Path(
    os.environ.get(
        "VICTOR_CONFORMANCE_DIR",
        Path(__file__).resolve().parents[1] / "fixtures" / "cloudevents-conformance",
    )
)
ECHO_TYPES = ("com.example.someevent", "io.cloudevents.minimum")
ECHOED = "dev.victor.test.echoed"


@dataclass(frozen=True)
class Case:
    """One conformance document: context attributes, extensions, data and the mode it names."""

    name: str
    mode: str | None
    attributes: dict[str, str]
    extensions: dict[str, str]
    data: str | None
    transport: dict[str, str]

    def replayed(self, event_type: str | None = None) -> Case:
        """The case with a fresh id (the function de-duplicates on source and id), optionally retyped."""
        attributes = {**self.attributes, "id": f"{self.attributes['id']}/{uuid.uuid4()}"}
        if event_type is not None:
            attributes["type"] = event_type
        return dataclasses.replace(self, attributes=attributes)

    @property
    def is_json(self) -> bool:
        media = self.attributes.get("datacontenttype", "application/json").split(";")[0].strip()
        return media == "application/json" or media.endswith("+json")


def load_cases(directory: Path = CONFORMANCE) -> list[Case]:
    """Every YAML document under `directory`/yaml, in file order."""
    cases = []
    for path in sorted((directory / "yaml").rglob("*.yaml")):
        documents = yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
        for number, document in enumerate(d for d in documents if d):
            context = dict(document["ContextAttributes"])
            extensions = dict(context.pop("Extensions", None) or {})
            cases.append(
                Case(
                    name=f"{path.relative_to(directory / 'yaml')}#{number}",
                    mode=document.get("Mode"),
                    attributes=context,
                    extensions=extensions,
                    data=document.get("Data"),
                    transport=dict(document.get("TransportExtensions") or {}),
                )
            )
    return cases


def to_request(case: Case, mode: str) -> tuple[dict[str, str], bytes]:
    """Headers and body of `case` in binary or structured mode."""
    headers = dict(case.transport)
    if mode == "binary":
        for name, value in {**case.attributes, **case.extensions}.items():
            if name == "datacontenttype":
                headers["content-type"] = value
            else:
                headers[f"ce-{name}"] = percent_encode(value)
        return headers, (case.data or "").encode("utf-8")
    document: dict[str, Any] = {**case.attributes, **case.extensions}
    if case.data is not None:
        document["data"] = msgspec.json.decode(case.data) if case.is_json else case.data
    headers["content-type"] = f"{STRUCTURED}; charset=utf-8"
    return headers, msgspec.json.encode(document)


def expected_parse(case: Case, mode: str) -> dict[str, Any]:
    """What the function must have parsed from `to_request(case, mode)`."""
    attributes = {**case.attributes, **case.extensions}
    data = case.data.encode("utf-8") if case.data is not None else None
    if mode == "structured" and case.data is not None and case.is_json:
        # Structured JSON data travels as a JSON value: the same value, re-encoded compactly.
        data = msgspec.json.encode(msgspec.json.decode(case.data))
        attributes.setdefault("datacontenttype", "application/json")
    return {"attributes": attributes, "data_base64": base64.b64encode(data).decode() if data else None}


class Echo(msgspec.Struct, kw_only=True):
    attributes: dict[str, str]
    data_base64: str | None


async def echo(event: CloudEvent, runtime: Runtime) -> CloudEvent:
    """Reply with the event as parsed: every attribute and extension, and the exact data bytes."""
    data = base64.b64encode(event.data).decode() if event.data else None
    return new_event(
        ECHOED, runtime.source, Echo(attributes=event.attributes(), data_base64=data), subject=event.id
    )


ECHO_SPEC = dataclasses.replace(
    SPEC, event_handlers={**SPEC.event_handlers, **dict.fromkeys(ECHO_TYPES, echo)}
)
echo_handle = target(ECHO_SPEC)
