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
            extensions = {
                name: _unclipped(value) for name, value in (context.pop("Extensions", None) or {}).items()
            }
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


def _unclipped(value: str) -> str:
    """A block scalar (`|`) keeps its final line feed, a character no CloudEvents attribute may hold.

    The conformance files write `comexampleextension2: |` for a JSON value; the value meant is the
    line itself (sent with its LF, the event is refused: see `bad_attribute_events`).
    """
    return value[:-1] if value.endswith("\n") else value


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


# ---------------------------------------------------------------- attribute values no event may carry

# A structured event whose datacontenttype, copied into a Content-Type header unchecked, would end
# the header block and smuggle a second request behind the first (the attack of issue 12, item 4).
SMUGGLING_CONTENT_TYPE = (
    "application/json\r\nx-injected: yes\r\ncontent-length: 0\r\n\r\n"
    "POST /smuggled HTTP/1.1\r\nhost: subscriber\r\ncontent-length: 0\r\nx-smuggled: yes"
)


@dataclass(frozen=True)
class BadAttribute:
    """One event whose attribute value has a character CloudEvents forbids; refused 400 at parse."""

    name: str
    headers: dict[str, str]
    body: bytes
    detail: str


def bad_attribute_events(event_type: str, source: str = "/test/bad-attribute") -> list[BadAttribute]:
    """Control characters, noncharacters and non-header text in attributes and extensions, both modes.

    Each event is otherwise valid for `event_type`, with a fresh id, so only the bad value refuses it.
    """

    def structured(attribute: str, value: str) -> tuple[dict[str, str], bytes]:
        document = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": source, "type": event_type}
        document[attribute] = value
        return {"content-type": STRUCTURED}, msgspec.json.encode({**document, "data": {}})

    def binary(**headers: str) -> tuple[dict[str, str], bytes]:
        base = {
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-source": source,
            "ce-type": event_type,
        }
        return {**base, "content-type": "application/json", **headers}, b"{}"

    def detail(attribute: str, code: int) -> str:
        return f"attribute {attribute} contains the character U+{code:04X}"

    return [
        BadAttribute(
            "structured datacontenttype smuggling a request",
            *structured("datacontenttype", SMUGGLING_CONTENT_TYPE),
            detail("datacontenttype", 0x0D),
        ),
        BadAttribute(
            "structured subject with a line feed", *structured("subject", "a\nb"), detail("subject", 0x0A)
        ),
        BadAttribute(
            "structured extension with NUL",
            *structured("comexampleext", "a\x00b"),
            detail("comexampleext", 0),
        ),
        BadAttribute("structured id with DEL", *structured("id", "id\x7f"), detail("id", 0x7F)),
        BadAttribute(
            "structured source with NEL (C1)", *structured("source", "/s\x85"), detail("source", 0x85)
        ),
        BadAttribute(
            "structured type with a noncharacter",
            *structured("type", f"{event_type}\uffff"),
            detail("type", 0xFFFF),
        ),
        BadAttribute(
            "structured datacontenttype not ASCII",
            *structured("datacontenttype", "application/json; charset=\u00fc"),
            detail("datacontenttype", 0xFC),
        ),
        BadAttribute(
            "binary percent-encoded CR LF in ce-subject",
            *binary(**{"ce-subject": "a%0D%0Ax-injected: yes"}),
            detail("subject", 0x0D),
        ),
        BadAttribute(
            "binary percent-encoded NUL in an extension",
            *binary(**{"ce-comexampleext": "%00"}),
            detail("comexampleext", 0),
        ),
        BadAttribute(
            "binary extension ending in a line feed (the conformance files' block scalar)",
            *binary(**{"ce-comexampleextension2": percent_encode('{"othervalue": 5}\n')}),
            detail("comexampleextension2", 0x0A),
        ),
        BadAttribute(
            "binary tab in the content type",
            *binary(**{"content-type": "application/json;\tcharset=utf-8"}),
            detail("datacontenttype", 0x09),
        ),
    ]
