"""Knative delivery specs and one delivery with its retries.

A `DeliverySpec` is the `delivery` block of a Trigger or Broker: `retry`,
`backoffPolicy`, `backoffDelay`, `timeout` (ISO-8601 durations) and
`deadLetterSink`. `deliver` sends one event to one subscriber the way the
Knative dispatcher does: binary mode with `Prefer: reply`, retried on network
errors, 404, 408, 409, 429 and 5xx, and a 2xx whose non-empty body is not a
CloudEvent counted as a 502. `dead_letter` adds the `knativeerror*` extensions
Knative puts on an event it gives up on.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from common.cloudevents import CloudEvent, CloudEventError, from_http, is_cloudevent, to_binary

BackoffPolicy = Literal["linear", "exponential"]
RETRYABLE_STATUSES = frozenset({404, 408, 409, 429})
# Knative stores at most this much of the failed response in knativeerrordata.
ERROR_DATA_MAX_BYTES = 1024
# Knative reports a dispatch that got no HTTP answer as a 500 with this prefix in the data.
NETWORK_ERROR_STATUS = 500
NOT_A_CLOUDEVENT_STATUS = 502
_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_UNIT_SECONDS = {"weeks": 604800.0, "days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0}


class DeliveryConfigError(ValueError):
    """A `delivery` block cannot be used; the message names where it is."""


def parse_duration(text: str, where: str) -> float:
    """Seconds in an ISO-8601 duration such as PT0.5S, PT2M or P1DT1H."""
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None:
        raise DeliveryConfigError(f"{where}: {text!r} is not an ISO-8601 duration such as PT0.2S or PT1M")
    return float(
        sum(float(value) * _UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value)
    )


@dataclass(frozen=True)
class DeliverySpec:
    """How hard to try one subscriber, and where events go when every attempt failed."""

    retry: int = 0
    backoff_policy: BackoffPolicy = "exponential"
    backoff_delay: float = 0.0
    timeout: float | None = None
    dead_letter_url: str | None = None

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry `retry_number` (1 for the first retry).

        linear: delay * n (delay, 2*delay, 3*delay ...);
        exponential: delay * 2^(n-1) (delay, 2*delay, 4*delay ...).
        """
        if self.backoff_policy == "linear":
            return self.backoff_delay * retry_number
        return self.backoff_delay * 2.0 ** (retry_number - 1)


def parse_delivery(
    block: Mapping[str, Any] | None, where: str, resolve_dead_letter: Any
) -> DeliverySpec | None:
    """A `DeliverySpec` from a manifest's `delivery` mapping (None when absent).

    `resolve_dead_letter(destination, where)` turns the deadLetterSink
    destination (ref or uri) into a URL.
    """
    if block is None:
        return None
    if not isinstance(block, Mapping):
        raise DeliveryConfigError(f"{where}: delivery must be a mapping")
    retry = block.get("retry", 0)
    if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
        raise DeliveryConfigError(f"{where}: delivery.retry must be a whole number >= 0, got {retry!r}")
    policy = block.get("backoffPolicy", "exponential")
    if policy not in ("linear", "exponential"):
        raise DeliveryConfigError(
            f"{where}: delivery.backoffPolicy must be linear or exponential, got {policy!r}"
        )
    delay = block.get("backoffDelay")
    timeout = block.get("timeout")
    sink = block.get("deadLetterSink")
    return DeliverySpec(
        retry=retry,
        backoff_policy=policy,
        backoff_delay=parse_duration(delay, f"{where}: delivery.backoffDelay") if delay else 0.0,
        timeout=parse_duration(timeout, f"{where}: delivery.timeout") if timeout else None,
        dead_letter_url=resolve_dead_letter(sink, f"{where}: delivery.deadLetterSink") if sink else None,
    )


def is_retryable(status: int) -> bool:
    """Whether Knative retries an attempt answered with `status` (network errors count as 500)."""
    return status in RETRYABLE_STATUSES or status >= 500


@dataclass(frozen=True)
class Attempt:
    """What one POST to a subscriber came to."""

    status: int
    body: bytes
    reply: CloudEvent | None = None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class DeliveryResult:
    """The last attempt of a delivery and how many attempts were made."""

    url: str
    last: Attempt
    attempts: int

    @property
    def succeeded(self) -> bool:
        return self.last.succeeded


async def attempt(
    http: httpx.AsyncClient, url: str, event: CloudEvent, timeout: float | None, max_reply_bytes: int
) -> Attempt:
    """POST `event` once in binary mode asking for a reply; never raises for HTTP or network trouble."""
    headers, body = to_binary(event)
    headers["prefer"] = "reply"
    try:
        response = await http.post(url, headers=headers, content=body, timeout=timeout)
    except httpx.TimeoutException as exc:
        return Attempt(
            NETWORK_ERROR_STATUS, f"dispatch error: {type(exc).__name__} after {timeout}s".encode()
        )
    except httpx.HTTPError as exc:
        return Attempt(NETWORK_ERROR_STATUS, f"dispatch error: {type(exc).__name__}: {exc}".encode())
    content = response.content
    if not 200 <= response.status_code < 300:
        return Attempt(response.status_code, content)
    response_headers = dict(response.headers)
    if is_cloudevent(response_headers):
        try:
            reply = from_http(response_headers, content, max_bytes=max_reply_bytes)
        except CloudEventError as exc:
            message = f"the reply is not a valid CloudEvent: {exc.message}"
            return Attempt(NOT_A_CLOUDEVENT_STATUS, message.encode())
        return Attempt(response.status_code, content, reply)
    if content:
        # Knative: a response MUST be empty or a valid CloudEvent; anything else is a 502.
        return Attempt(NOT_A_CLOUDEVENT_STATUS, content)
    return Attempt(response.status_code, b"")


async def deliver(
    http: httpx.AsyncClient,
    url: str,
    event: CloudEvent,
    spec: DeliverySpec,
    *,
    max_reply_bytes: int,
) -> DeliveryResult:
    """Send `event` to `url`, retrying as `spec` says; returns the last attempt."""
    retries = 0
    while True:
        last = await attempt(http, url, event, spec.timeout, max_reply_bytes)
        if last.succeeded or not is_retryable(last.status) or retries >= spec.retry:
            return DeliveryResult(url, last, retries + 1)
        retries += 1
        await asyncio.sleep(spec.backoff(retries))


def dead_letter(event: CloudEvent, result: DeliveryResult) -> CloudEvent:
    """The event as Knative sends it to a dead-letter sink: the original plus knativeerror* extensions."""
    data = result.last.body[:ERROR_DATA_MAX_BYTES]
    return event.with_extensions(
        knativeerrordest=result.url,
        knativeerrorcode=str(result.last.status),
        knativeerrordata=base64.b64encode(data).decode("ascii") if data else None,
    )
