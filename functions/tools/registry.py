"""The tool registry: each tool defined once, with its argument Struct and flags.

A tool is a `ToolDefinition`: a name, a description, a msgspec Struct for its
arguments (which is also its JSON Schema, for HTTP, events and MCP alike), an
async `run`, and flags. A tool with an `output` Struct returns `Rendered`: the
text a model reads and the same result as that Struct (MCP's structured content,
whose schema is `output_schema`). `paths` tells the executor which workspace paths a
call reads and writes, so writes to one path keep their order in a batch and
writes invalidate cached reads. The catalog version is a hash of every
definition, so anything derived from the catalog (embeddings, cached
selections) is keyed by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from common.json_input import decode_json

if TYPE_CHECKING:
    from functions.tools.context import ToolContext


class ToolError(Exception):
    """A tool call failed in a way the caller (often a model) should read and act on."""

    def __init__(self, message: str, code: str = "tool_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UnknownTool(LookupError):
    code = "unknown_tool"

    def __init__(self, name: str) -> None:
        super().__init__(f"no tool named {name!r}; GET /v1/tools lists them")
        self.name = name


class InvalidArguments(ValueError):
    """The arguments do not fit the tool's schema; the message names the field."""

    code = "invalid_arguments"

    def __init__(self, tool: str, detail: str) -> None:
        super().__init__(f"invalid arguments for {tool}: {detail}")
        self.tool = tool
        self.detail = detail


@dataclass(frozen=True)
class PathAccess:
    """Workspace paths a call reads and writes (relative as given)."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rendered:
    """A tool's result twice: `text` for a model, `data` (the tool's `output` Struct) for programs."""

    text: str
    data: msgspec.Struct


Runner = Callable[[Any, "ToolContext"], Awaitable["str | Rendered"]]
PathsOf = Callable[[Any], PathAccess]
# The state of what a cacheable call reads, e.g. a file's size and mtime; None disables caching for that call.
StateOf = Callable[[Any, "ToolContext"], Awaitable[str | None]]


@dataclass(frozen=True)
class ToolDefinition:
    name: str
    description: str
    arguments: type[msgspec.Struct]
    run: Runner
    read_only: bool = True
    idempotent: bool = True
    cacheable: bool = False
    dangerous: bool = False
    # The Struct a `Rendered` result's data is (None: text only).
    output: type[msgspec.Struct] | None = None
    paths: PathsOf = field(default=lambda _args: PathAccess())
    state: StateOf | None = None

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments, inlined (MCP and LLM APIs want one object schema)."""
        return inlined_schema(self.arguments)

    @property
    def title(self) -> str:
        """A human title from the name ("read_file" → "Read file")."""
        return self.name.replace("_", " ").capitalize()

    def output_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of the structured result, inlined; None for a text-only tool."""
        return inlined_schema(self.output) if self.output is not None else None

    def decode(self, arguments: Any) -> Any:
        """The arguments as the tool's Struct; `InvalidArguments` names the bad field."""
        if arguments is None:
            arguments = {}
        try:
            if isinstance(arguments, bytes | str):
                return decode_json(
                    arguments.encode() if isinstance(arguments, str) else arguments, self.arguments
                )
            return msgspec.convert(arguments, type=self.arguments, strict=True)
        except msgspec.ValidationError as exc:
            raise InvalidArguments(self.name, str(exc)) from None
        except msgspec.DecodeError as exc:
            raise InvalidArguments(self.name, f"not valid JSON: {exc}") from None


def inlined_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """One object schema for `struct`, the Structs it uses under `$defs`."""
    _, components = msgspec.json.schema_components([struct], ref_template="#/$defs/{name}")
    inlined = dict(components[struct.__name__])
    inlined.pop("title", None)
    others = {name: value for name, value in components.items() if name != struct.__name__}
    if others:
        inlined["$defs"] = others
    return inlined


class ToolInfo(msgspec.Struct, kw_only=True):
    """One tool as clients see it (GET /v1/tools)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool
    idempotent: bool
    cacheable: bool
    dangerous: bool


class ToolRegistry:
    """Tools by name, in definition order, with the catalog version."""

    def __init__(self, tools: Iterable[ToolDefinition]) -> None:
        self._tools: dict[str, ToolDefinition] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool
        self.version = self._version()

    def _version(self) -> str:
        digest = hashlib.sha256()
        for info in self.infos():
            digest.update(msgspec.json.encode(info))
        return digest.hexdigest()[:16]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> ToolDefinition:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownTool(name) from None

    def infos(self) -> list[ToolInfo]:
        return [
            ToolInfo(
                name=tool.name,
                description=tool.description,
                input_schema=tool.schema(),
                read_only=tool.read_only,
                idempotent=tool.idempotent,
                cacheable=tool.cacheable,
                dangerous=tool.dangerous,
            )
            for tool in self._tools.values()
        ]
