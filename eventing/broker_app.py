"""`victor serve broker`: the local Broker as an app built by the shared `create_app`.

The broker is a `FunctionSpec` named "broker" whose one route is the ingress
`POST /{namespace}/{broker}`, so it gets /health*, /metrics, JSON error bodies
(405 for other methods) and request metrics like every function. Two choices
differ from a function: the ingress is not behind VICTOR_API_KEY (like
Knative's cluster-local ingress, functions publish to it without a key), and
the shared `POST /` has no handlers here (it answers 400: send events to the
ingress path). Manifests are read when the app is created, so a bad Trigger
stops start-up with one line naming it.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as redis
from litestar import Litestar, Request, Response, post

from common.app import answer_response, create_app
from common.function import FunctionSpec, Runtime, error_answer
from common.settings import Settings, SettingsError, get_settings
from eventing.broker import Broker
from eventing.broker_settings import BrokerSettings, load_broker_settings
from eventing.triggers import Manifests, SubscriberDirectory, TriggerConfigError, load_manifests

BROKER_KEY = "broker"


@post(
    "/{namespace:str}/{broker:str}",
    status_code=202,
    summary="Broker ingress: accept one CloudEvent (binary or structured mode)",
)
async def ingress(
    namespace: str, broker: str, request: Request[Any, Any, Any], runtime: Runtime
) -> Response[bytes]:
    """202 with an empty body once the event is stored; 400 invalid event, 404 unknown broker."""
    served: Broker | None = runtime.state.get(BROKER_KEY)
    if served is None:
        return answer_response(error_answer(503, "starting", "the broker is starting; retry"))
    body = await request.body()
    return answer_response(await served.ingress(namespace, broker, dict(request.headers), body))


def load_triggers(config: BrokerSettings) -> Manifests:
    """The served Broker and its Triggers from VICTOR_TRIGGERS_PATH; `SettingsError` on a bad manifest."""
    directory = SubscriberDirectory(config.subscriber_urls)
    try:
        return load_manifests(config.triggers_path, directory, namespace=config.namespace, broker=config.name)
    except TriggerConfigError as exc:
        raise SettingsError("VICTOR_TRIGGERS_PATH", str(exc)) from None


def create(settings: Settings | None = None, broker_settings: BrokerSettings | None = None) -> Litestar:
    """The broker app; raises `SettingsError` when Redis is unset or a manifest cannot be served."""
    settings = settings or get_settings()
    config = broker_settings or load_broker_settings(settings)
    if settings.redis_url is None:
        raise SettingsError("REDIS_URL", "the broker keeps accepted events in Redis; set a redis:// URL")
    manifests = load_triggers(config)
    redis_url = settings.redis_url

    async def start(runtime: Runtime) -> None:
        # A client of its own: blocking stream reads must not share the cache's short socket timeout.
        client = redis.from_url(redis_url, socket_connect_timeout=5, health_check_interval=30)
        served = Broker(
            config,
            manifests.broker(config.namespace, config.name),
            manifests.triggers,
            client,
            max_event_bytes=settings.max_event_bytes,
        )
        await served.start()
        runtime.state[BROKER_KEY] = served

    async def stop(runtime: Runtime) -> None:
        served: Broker | None = runtime.state.pop(BROKER_KEY, None)
        if served is not None:
            await served.stop()
            await served.client.aclose()

    spec = FunctionSpec(name="broker", routes=[ingress], requires=("redis",), start=start, stop=stop)
    return create_app(spec, msgspec.structs.replace(settings, api_key=None))
