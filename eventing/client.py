"""Sending CloudEvents: to the broker (VICTOR_BROKER_URL or Knative's K_SINK) or any URL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from common import metrics, tracing
from common.cloudevents import CloudEvent, from_http, to_binary

if TYPE_CHECKING:  # callers pass their client; importing httpx (and its CLI's rich) cost cold start
    import httpx


class DeliveryError(RuntimeError):
    """The receiver did not accept the event."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"event not accepted: HTTP {status}: {detail}")
        self.status = status


async def send_event(
    http: httpx.AsyncClient,
    url: str,
    event: CloudEvent,
    *,
    timeout: float = 30.0,
    credentials: Mapping[str, str] | None = None,
) -> CloudEvent | None:
    """POST `event` in binary mode with the current trace context and `credentials` (the headers of
    `common.auth.event_credentials`); returns a reply event if any."""
    import httpx  # loaded already: `http` is an httpx client

    event = tracing.with_trace(event)
    headers, body = to_binary(event)
    headers.update(tracing.current_headers())
    headers.update(credentials or {})
    try:
        response = await http.post(url, headers=headers, content=body, timeout=timeout)
    except httpx.HTTPError as exc:
        metrics.events_published.labels(event.type, "error").inc()
        raise DeliveryError(0, f"{type(exc).__name__} reaching {url}") from exc
    if response.status_code >= 300:
        metrics.events_published.labels(event.type, "rejected").inc()
        raise DeliveryError(response.status_code, response.text[:500])
    metrics.events_published.labels(event.type, "accepted").inc()
    if response.status_code == 200 and response.content and "ce-id" in response.headers:
        return from_http(response.headers, response.content, max_bytes=64 * 1024 * 1024)
    return None


async def publish(
    http: httpx.AsyncClient, broker_url: str, event: CloudEvent, credentials: Mapping[str, str] | None = None
) -> None:
    """Hand `event` to the broker's ingress (202 expected)."""
    await send_event(http, broker_url, event, credentials=credentials)
