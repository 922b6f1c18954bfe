"""What a function is: one declared object, served by every mode from this declaration alone.

In the spirit of Knative func's Python template, a `FunctionSpec` holds the
function's name, its CloudEvent handlers by type, ONE route table (`Route`:
method, path template, body Struct, handler), the dependencies its readiness
requires, the CloudEvent extensions it carries from a request to its reply,
its typed state, and optional `start`/`stop`. `common.app` (Litestar, for
`victor serve`) and `common.framework_target` (functions-framework) are both
generated from it, so a function never restates a route or adapts an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from common.cloudevents import CloudEvent

if TYPE_CHECKING:
    from common.answers import Answer, Refusal
    from common.runtime import Runtime

B = TypeVar("B")

EventHandler = Callable[[CloudEvent, "Runtime[Any]"], Awaitable[CloudEvent | None]]
Check = Callable[["Runtime[Any]"], Awaitable[None]]
Lifecycle = Callable[["Runtime[Any]"], Awaitable[None]]
# An ASGI app that gets the runtime first (MCP's transport); served under Litestar only.
MountHandler = Callable[["Runtime[Any]", Any, Any, Any], Awaitable[None]]


@dataclass(frozen=True)
class Call(Generic[B]):
    """One HTTP request to a route: path parameters, body (decoded as the route's Struct) and headers."""

    method: str
    params: Mapping[str, str]
    body: B
    raw: bytes
    headers: Mapping[str, str]


# A route's result: a Struct, dict or list (answered 200 as JSON), or a whole or streamed answer.
RouteResult = Any
RouteHandler = Callable[[Call[Any], "Runtime[Any]"], Awaitable[RouteResult]]
# How a route words its refusals when its clients expect another API's error body (OpenAI's).
RefusalRenderer = Callable[["Refusal"], "Answer"]


@dataclass(frozen=True)
class Route:
    """One HTTP route of a function: `{name}` in `path` matches one path segment.

    `body` is the Struct the JSON body is decoded as (None: no body; `bytes`: the raw body, whose
    media types and their Structs `raw_body` gives the OpenAPI schema);
    `returns` types the answer in the OpenAPI schema, `accepted` a 202 answer (work that goes on).
    Routes are matched in table order.
    """

    method: str
    path: str
    handler: RouteHandler
    body: Any = None
    returns: Any = None
    accepted: Any = None
    summary: str | None = None
    description: str | None = None
    # Server-Sent Events in the OpenAPI schema (the handler answers StreamedAnswer when asked to stream).
    media_type: str = "application/json"
    # None: the one error body of `common.answers.refusal_answer`.
    refusals: RefusalRenderer | None = None
    raw_body: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())


@dataclass(frozen=True)
class Mount:
    """An ASGI app under `path` (MCP's streamable HTTP transport); functions-framework does not serve it."""

    path: str
    app: MountHandler


@dataclass(frozen=True)
class FunctionSpec:
    """One function: events, routes, readiness dependencies, propagated extensions, state and lifecycle."""

    name: str
    event_handlers: Mapping[str, EventHandler] = field(default_factory=dict)
    routes: Sequence[Route] = ()
    mounts: Sequence[Mount] = ()
    # Built-in dependency names ("redis", "postgres", "lancedb") or names of `checks`.
    requires: Sequence[str] = ()
    checks: Mapping[str, Check] = field(default_factory=dict)
    # Dependencies reported in /health; defaults to the required ones plus `checks`.
    reports: Sequence[str] = ()
    # CloudEvent extensions copied from a delivered event to its reply when the reply lacks them.
    propagates: Sequence[str] = ()
    # Makes the function's typed state (`runtime.state`), once per runtime.
    state: Callable[[], Any] = dict
    start: Lifecycle | None = None
    stop: Lifecycle | None = None
    # When true, `start` runs beside the server (model loading, say): liveness answers at
    # once and /health/startup stays 503 until it finishes (or reports its failure).
    start_in_background: bool = False
