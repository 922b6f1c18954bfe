"""Settings of the local broker, read with the shared `EnvReader`.

| variable | default | meaning |
| --- | --- | --- |
| `VICTOR_TRIGGERS_PATH` | `knative/base` | Broker and Triggers YAML (see `default_triggers_path`) |
| `VICTOR_BROKER_NAMESPACE` | `victor` | namespace of the served Broker (and of objects without one) |
| `VICTOR_BROKER_NAME` | `default` | name of the served Broker; ingress is `POST /{namespace}/{name}` |
| `VICTOR_SUBSCRIBER_URLS` | | `name=url,name=url`: local URL of each object a Trigger names by `ref` |
| `VICTOR_BROKER_WORKERS` | `64` | concurrent deliveries per Trigger |
| `VICTOR_BROKER_BATCH` | `100` | events read from the stream per Trigger at a time |
| `VICTOR_BROKER_TIMEOUT` | unset | per-attempt timeout when a delivery spec sets none (Knative has none) |
| `VICTOR_BROKER_STREAM` | `victor:broker:{namespace}:{name}` | Redis stream holding accepted events |
| `VICTOR_BROKER_CONSUMER` | `dispatcher` | consumer name in each Trigger's consumer group |

`VICTOR_<FN>_URL` (chat, tools, embeddings, health) map the Knative Services
`victor-<fn>`; `VICTOR_SUBSCRIBER_URLS` entries take precedence.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from common.settings import EnvReader, Settings, SettingsError
from eventing.broker.delivery import DeliveryConfigError, parse_duration


class BrokerSettings(msgspec.Struct, frozen=True, kw_only=True):
    triggers_path: Path
    namespace: str = "victor"
    name: str = "default"
    subscriber_urls: dict[str, str] = msgspec.field(default_factory=dict)
    workers: int = 64
    batch: int = 100
    default_timeout: float | None = None
    stream: str = ""
    consumer: str = "dispatcher"

    @property
    def ingress_path(self) -> str:
        return f"/{self.namespace}/{self.name}"


def _subscriber_urls(value: str | None) -> dict[str, str]:
    urls: dict[str, str] = {}
    for entry in (value or "").split(","):
        if not entry.strip():
            continue
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        parts = urlsplit(url)
        if not sep or not name or parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(
                "VICTOR_SUBSCRIBER_URLS",
                f"expected name=http://host:port entries separated by commas, got {entry!r}",
            )
        urls[name] = url.rstrip("/")
    return urls


DEFAULT_TRIGGERS = Path("knative") / "base"
# The checkout this package runs from (an editable install, `victor dev` in a clone).
_PROJECT = Path(__file__).resolve().parents[2]


def default_triggers_path() -> Path:
    """`knative/base` of the current directory, else of the project the package came from.

    So `victor dev` started in any directory of a checkout's environment finds the same Trigger
    manifests; an install without the project (the image) sets VICTOR_TRIGGERS_PATH instead.
    """
    if DEFAULT_TRIGGERS.exists() or not (_PROJECT / DEFAULT_TRIGGERS).exists():
        return DEFAULT_TRIGGERS
    return _PROJECT / DEFAULT_TRIGGERS


def load_broker_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> BrokerSettings:
    """The broker's settings; raises `SettingsError` naming the first bad variable."""
    env = EnvReader(os.environ if environ is None else environ)
    namespace = env.string("VICTOR_BROKER_NAMESPACE", "victor")
    name = env.string("VICTOR_BROKER_NAME", "default")
    urls = {f"victor-{function}": url for function, url in settings.function_urls.items()}
    urls.update(_subscriber_urls(env.optional("VICTOR_SUBSCRIBER_URLS")))
    timeout_text = env.optional("VICTOR_BROKER_TIMEOUT")
    try:
        timeout = parse_duration(timeout_text, "VICTOR_BROKER_TIMEOUT") if timeout_text else None
    except DeliveryConfigError:
        raise SettingsError(
            "VICTOR_BROKER_TIMEOUT", f"expected an ISO-8601 duration such as PT60S, got {timeout_text!r}"
        ) from None
    return BrokerSettings(
        triggers_path=Path(env.optional("VICTOR_TRIGGERS_PATH") or default_triggers_path()),
        namespace=namespace,
        name=name,
        subscriber_urls=urls,
        workers=env.integer("VICTOR_BROKER_WORKERS", 64, minimum=1, maximum=10000),
        batch=env.integer("VICTOR_BROKER_BATCH", 100, minimum=1, maximum=10000),
        default_timeout=timeout,
        stream=env.string("VICTOR_BROKER_STREAM", f"victor:broker:{namespace}:{name}"),
        consumer=env.string("VICTOR_BROKER_CONSUMER", "dispatcher"),
    )
