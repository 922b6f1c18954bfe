"""`victor serve broker`: the local Broker as an app built by the shared `create_app`.

The broker is a `FunctionSpec` named "broker" whose one route is the ingress
`POST /{namespace}/{broker}`, so it gets /health*, /metrics, JSON error bodies
(405 for other methods), OpenAPI and request metrics like every function. Two
choices differ from a function: the ingress is not behind VICTOR_API_KEYS (like
Knative's cluster-local ingress, functions publish to it without an API key) but
behind VICTOR_EVENT_AUTH, as `POST /` on every function is; and
the shared `POST /` has no handlers here (it answers 400: send events to the
ingress path). Manifests are read when the app is created, so a bad Trigger
stops start-up with one line naming it; a Trigger whose subscriber has no local
URL is logged, not served, and shows as 0 in `victor_broker_trigger_ready`.

`BrokerApp` answers ingress POSTs itself before Litestar sees them: the same
`Broker.ingress`, without routing, dependency injection and the guard's thread
hop, which measured as most of the broker's per-event CPU on two cores. It
answers other POST paths as Knative's broker ingress does (pkg/broker/ingress):
`/` is 404, a path that is not `/{namespace}/{broker}` (one trailing slash
allowed) is 400, each with a JSON body; the app's own routes go to Litestar.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import redis.asyncio as redis
from litestar import Litestar
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import metrics, tracing
from common.answers import Answer, Refusal, error_answer, internal_error_answer, refusal_answer
from common.app import create_app
from common.auth import authenticate_event, event_credentials
from common.cloudevents import EVENT_BODY
from common.event_pipeline import oidc_audience
from common.function import Call, FunctionSpec, Route
from common.runtime import Runtime
from common.settings import Settings, SettingsError, get_settings
from eventing.broker.dispatch import Broker, trigger_ready
from eventing.broker.settings import BrokerSettings, load_broker_settings
from eventing.broker.triggers import Manifests, SubscriberDirectory, TriggerConfigError, load_manifests

log = logging.getLogger(__name__)
BROKER_KEY = "broker"
INGRESS_ROUTE = "/{namespace:str}/{broker:str}"


async def ingress(call: Call[bytes], runtime: Runtime[dict[str, Any]]) -> Answer:
    """202 with an empty body once the event is stored; 400 invalid event, 404 unknown broker."""
    served: Broker | None = runtime.state.get(BROKER_KEY)
    if served is None:
        return error_answer(503, "starting", "the broker is starting; retry")
    params = call.params
    try:
        await authenticate_event(runtime.settings, oidc_audience("broker"), call.headers)
    except Refusal as exc:
        return refusal_answer(exc)
    return await served.ingress(params["namespace"], params["broker"], dict(call.headers), call.body)


INGRESS = Route(
    "POST",
    "/{namespace}/{broker}",
    ingress,
    bytes,
    summary="Broker ingress: accept one CloudEvent (binary or structured mode)",
    raw_body=EVENT_BODY,
)


class BrokerApp:
    """ASGI app: `POST /{namespace}/{broker}` answered directly, every other request by Litestar."""

    def __init__(self, app: Litestar, max_body: int) -> None:
        self.app = app
        self.max_body = max_body
        self.own_paths = {route.path for route in app.routes} - {"/", INGRESS_ROUTE}

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] not in self.own_paths:
            path = scope["path"]
            parts = path.removesuffix("/").split("/")
            served: Broker | None = self.app.state.runtime.state.get(BROKER_KEY)
            started = time.perf_counter()
            answer: Answer | None = None
            if path == "/":
                answer = error_answer(404, "not_found", "send events to /{namespace}/{broker}")
            elif len(parts) != 3 or not parts[1] or not parts[2]:
                answer = error_answer(
                    400, "malformed_path", f"{path!r} is not a broker ingress path /{{namespace}}/{{broker}}"
                )
            elif served is not None:
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                # The ingress span: the stream entry carries its context on to each delivery.
                with tracing.server_span("POST", path, headers) as span:
                    answer = await self._ingress(served, parts[1], parts[2], headers, receive)
                    tracing.record_response(span, "POST", INGRESS_ROUTE, answer.status)
            if answer is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": answer.status,
                        "headers": [
                            (k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
                        ]
                        + [(b"content-length", str(len(answer.body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": answer.body})
                metrics.api_requests.labels("broker", "POST", INGRESS_ROUTE, str(answer.status)).inc()
                metrics.api_duration.labels("broker", "POST", INGRESS_ROUTE).observe(
                    time.perf_counter() - started
                )
                if answer.status >= 400:
                    metrics.api_errors.labels("broker", INGRESS_ROUTE, str(answer.status)).inc()
                return
        await self.app(scope, receive, send)

    async def _ingress(
        self, served: Broker, namespace: str, name: str, headers: dict[str, str], receive: Any
    ) -> Answer:
        try:  # before the body is read: an unauthenticated sender gets nothing stored or buffered
            await authenticate_event(self.app.state.runtime.settings, oidc_audience("broker"), headers)
        except Refusal as exc:
            return refusal_answer(exc)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return error_answer(
                    400, "disconnected", "the client went away before sending the whole event"
                )
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return error_answer(
                    413,
                    "too_large",
                    f"event body is over {self.max_body} bytes; the limit is {self.max_body}",
                )
            if not message.get("more_body"):
                break
        try:
            return await served.ingress(namespace, name, headers, bytes(body))
        except Exception:  # never a plain-text 500: the one JSON error body, the details in the log
            log.exception("broker ingress failed")
            return internal_error_answer()


def load_triggers(config: BrokerSettings) -> Manifests:
    """The served Broker and its Triggers from VICTOR_TRIGGERS_PATH; `SettingsError` on a bad manifest."""
    directory = SubscriberDirectory(config.subscriber_urls)
    try:
        return load_manifests(config.triggers_path, directory, namespace=config.namespace, broker=config.name)
    except TriggerConfigError as exc:
        raise SettingsError("VICTOR_TRIGGERS_PATH", str(exc)) from None


def create(settings: Settings | None = None, broker_settings: BrokerSettings | None = None) -> BrokerApp:
    """The broker app; raises `SettingsError` when Redis is unset or a manifest cannot be served."""
    settings = settings or get_settings()
    config = broker_settings or load_broker_settings(settings)
    if settings.redis_url is None:
        raise SettingsError("REDIS_URL", "the broker keeps accepted events in Redis; set a redis:// URL")
    manifests = load_triggers(config)
    for trigger in manifests.triggers:
        trigger_ready.labels(trigger.name).set(1)
    for unready in manifests.unready:
        trigger_ready.labels(unready.name).set(0)
    redis_url = settings.redis_url

    async def start(runtime: Runtime[dict[str, Any]]) -> None:
        # A client of its own: blocking stream reads must not share the cache's short socket timeout.
        # Retrying a dropped connection makes a Redis restart invisible to publishers (a retried
        # XADD may store an event twice: at-least-once).
        client = redis.from_url(
            redis_url,
            socket_connect_timeout=5,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        served = Broker(
            config,
            manifests.broker(config.namespace, config.name),
            manifests.triggers,
            client,
            max_event_bytes=settings.max_event_bytes,
            credentials=lambda: event_credentials(settings),
            reply_url=settings.broker_url,
        )
        await served.start()
        runtime.state[BROKER_KEY] = served

    async def stop(runtime: Runtime[dict[str, Any]]) -> None:
        served: Broker | None = runtime.state.pop(BROKER_KEY, None)
        if served is not None:
            await served.stop()
            await served.client.aclose()

    spec = FunctionSpec(name="broker", routes=[INGRESS], requires=("redis",), start=start, stop=stop)
    # The ingress takes events (VICTOR_EVENT_AUTH), never API keys or their rate limit.
    app = create_app(spec, msgspec.structs.replace(settings, api_keys=(), rate_limit=None))
    return BrokerApp(app, settings.max_event_bytes)
