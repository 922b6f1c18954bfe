"""A function's own routes served from its route table, the same way in every serving mode.

Both serving modes hand a matched route to `serve_route`, which checks the API
key and its rate limit, reads the body under the size limit, decodes it as the route's Struct,
runs the handler and turns its result or its `Refusal` into the answer. Only
the framework glue (how a request arrives, how an answer leaves) differs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.answers import (
    INTERNAL_ERROR,
    Answer,
    Refusal,
    StreamedAnswer,
    decode_body,
    json_answer,
    refusal_answer,
)
from common.auth import check_api_key
from common.function import Call, Route
from common.rate_limit import check_rate_limit
from common.runtime import Runtime
from common.store import store_outage

log = logging.getLogger(__name__)
# Reads the request body; raises the 413 refusal once it grows over the limit.
BodyReader = Callable[[], Awaitable[bytes]]
_PARAMETER = re.compile(r"(\{[a-z_][a-z0-9_]*\})")


async def admit(runtime: Runtime[Any], headers: Mapping[str, str]) -> None:
    """Return when a request may reach the function's own routes: its API key (when keys are set),
    then its key's rate limit; raise the 401 or 429 refusal otherwise."""
    key = check_api_key(runtime.settings, headers)
    await check_rate_limit(runtime, key)


def unexpected_error(exc: Exception, method: str, path: str) -> Refusal:
    """The refusal for an exception no handler turned into one, logged: 503 with Retry-After when a
    store (PostgreSQL, Redis) cannot be reached now, else the 500 that points at the logs."""
    refusal = store_outage(exc)
    if refusal is not None:
        log.warning("%s %s: %s", method, path, refusal.message)
        return refusal
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return INTERNAL_ERROR


async def serve_route(
    runtime: Runtime[Any],
    route: Route,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    read_body: BodyReader,
) -> Answer | StreamedAnswer:
    """The answer of one of the function's own routes; never raises."""
    try:
        await admit(runtime, headers)
        _check_path(params)
        raw = await read_body() if route.method != "GET" else b""
        body: Any = None
        if route.body is bytes:
            body = raw
        elif route.body is not None:
            body = decode_body(raw, route.body)
        result = await route.handler(
            Call(method=route.method, params=params, body=body, raw=raw, headers=headers), runtime
        )
    except Refusal as exc:
        return route.refusals(exc) if route.refusals is not None else refusal_answer(exc)
    except Exception as exc:  # the same JSON answer in both modes, never a traceback or a framework's page
        refusal = unexpected_error(exc, route.method, route.path)
        return route.refusals(refusal) if route.refusals is not None else refusal_answer(refusal)
    if isinstance(result, Answer | StreamedAnswer):
        return result
    return json_answer(200, result)


def _check_path(params: Mapping[str, str]) -> None:
    """400 for a path parameter holding U+0000: no name or id can (PostgreSQL text cannot hold it)."""
    for name, value in params.items():
        if "\0" in value:
            raise Refusal(
                400, f"the path parameter {name} contains the character U+0000 (NUL)", "invalid_path"
            )


@dataclass(frozen=True)
class CompiledRoute:
    """A route with its path template as a pattern."""

    route: Route
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, route: Route) -> CompiledRoute:
        pattern = "".join(
            f"(?P<{part[1:-1]}>[^/]+)" if _PARAMETER.fullmatch(part) else re.escape(part)
            for part in _PARAMETER.split(route.path)
        )
        return cls(route, re.compile(pattern))


class RouteTable:
    """Finds the routes of a path, in table order (fixed paths before the templates that match them)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = [CompiledRoute.compile(route) for route in routes]

    def match(self, path: str) -> tuple[str | None, dict[str, Route], dict[str, str]]:
        """The template `path` matches (None if none), its routes by method, and the path parameters."""
        for compiled in self.routes:
            found = compiled.pattern.fullmatch(path)
            if found is not None:
                template = compiled.route.path
                by_method: dict[str, Route] = {}
                for other in self.routes:
                    if other.route.path == template:
                        by_method.setdefault(other.route.method, other.route)
                return template, by_method, found.groupdict()
        return None, {}, {}
