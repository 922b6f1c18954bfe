"""The chat function's own settings: provider, model, limits, retries, prices and caching.

| variable | default | meaning |
| --- | --- | --- |
| VICTOR_LLM_PROVIDER | auto | anthropic, openai, or auto: Anthropic when ANTHROPIC_API_KEY is set, |
|  |  | else OpenAI-compatible when OPENAI_API_KEY or OPENAI_BASE_URL is |
| VICTOR_LLM_MODEL | claude-sonnet-5-5 / gpt-4o-mini | model when a request names none |
| VICTOR_LLM_MODELS | unset | comma-separated models named in the `model` label of `victor_llm_*` besides |
|  |  | VICTOR_LLM_MODEL; any other model a request names is counted as `other` |
| VICTOR_LLM_MAX_TOKENS | 4096 | max_tokens when a request names none |
| VICTOR_LLM_TIMEOUT | 120 | seconds one LLM call may take |
| VICTOR_LLM_MAX_RETRIES | 3 | retries of 429, 529, 5xx and connection errors |
| VICTOR_LLM_RETRY_MAX_WAIT | 30 | longest wait between retries in seconds (caps retry-after) |
| VICTOR_LLM_TEMPERATURE | unset | sampling temperature; 0 makes requests deterministic (and cacheable) |
| VICTOR_LLM_RESPONSE_CACHE | false | cache responses to identical requests at temperature 0 in Redis |
| VICTOR_LLM_PRICES | prices.json | JSON {model-prefix: {input, output, cache_read, cache_write}}, USD/MTok, |
|  |  | added to the dated table in functions/chat/prices.json |
| VICTOR_CHAT_MAX_TOOL_ROUNDS | 8 | tool rounds one request may take before it fails |
| VICTOR_CHAT_TOOLS_TOP_K | 8 | tools selected by the tools function and sent with each LLM call |
| VICTOR_CHAT_TOOLS_STRATEGY | auto | selection strategy passed to /v1/tools/select |
| VICTOR_CHAT_WAIT_TIMEOUT | 300 | seconds POST /v1/chat waits for the loop to finish |
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Literal

import msgspec

from common.settings import EnvReader, Settings, SettingsError

ProviderName = Literal["anthropic", "openai"]


class Price(msgspec.Struct, frozen=True, kw_only=True):
    """US dollars per million tokens of each kind."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0


class PriceTable(msgspec.Struct, frozen=True, kw_only=True):
    """functions/chat/prices.json: the providers' list prices, with the date they were checked."""

    about: str
    checked: str
    sources: list[str]
    models: dict[str, Price]


# The maintained table (a dated data file beside this module); VICTOR_LLM_PRICES adds to it.
PRICE_TABLE = msgspec.json.decode((Path(__file__).parent / "prices.json").read_bytes(), type=PriceTable)
DEFAULT_PRICES: dict[str, Price] = dict(PRICE_TABLE.models)
DEFAULT_MODELS: dict[ProviderName, str] = {"anthropic": "claude-sonnet-5-5", "openai": "gpt-4o-mini"}
UNCONFIGURED_MESSAGE = (
    "no LLM provider is configured: set ANTHROPIC_API_KEY for Anthropic, "
    "or OPENAI_API_KEY and/or OPENAI_BASE_URL for an OpenAI-compatible server"
)
_MILLION = Decimal(1_000_000)
OTHER_MODEL = "other"


class ChatSettings(msgspec.Struct, frozen=True, kw_only=True):
    provider: ProviderName | None
    model: str
    # Models the metrics name (with `model`); a request's own model string never becomes a label.
    models: tuple[str, ...] = ()
    max_tokens: int = 4096
    timeout: float = 120.0
    max_retries: int = 3
    retry_max_wait: float = 30.0
    temperature: float | None = None
    response_cache: bool = False
    response_cache_ttl: int = 3600
    prices: dict[str, Price] = msgspec.field(default_factory=lambda: dict(DEFAULT_PRICES))
    max_tool_rounds: int = 8
    tools_top_k: int = 8
    tools_strategy: str = "auto"
    tools_prune_threshold: int = 16
    sse_ping: float = 15.0
    wait_timeout: float = 300.0

    def model_label(self, model: str) -> str:
        """`model` as the metrics' `model` label: a configured model (a dated id counts as the model it
        extends, claude-sonnet-4-5-20250929 as claude-sonnet-4-5), else "other", so labels stay bounded."""
        for known in (self.model, *self.models):
            if model == known or model.startswith(known + "-"):
                return known
        return OTHER_MODEL

    def price(self, model: str) -> Price | None:
        """The price of `model`: the entry with the longest prefix of its name (dated ids match)."""
        best = None
        for prefix in self.prices:
            if model.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return self.prices[best] if best is not None else None

    def cost(self, model: str, input: int, output: int, cache_read: int, cache_write: int) -> Decimal:
        """Exact cost in US dollars; zero for a model missing from the price table, which the
        caller counts as unpriced (`price` is None), never as free."""
        price = self.price(model)
        if price is None:
            return Decimal(0)
        total = (
            Decimal(str(price.input)) * input
            + Decimal(str(price.output)) * output
            + Decimal(str(price.cache_read)) * cache_read
            + Decimal(str(price.cache_write)) * cache_write
        )
        return total / _MILLION


def _prices(env: EnvReader) -> dict[str, Price]:
    raw = env.optional("VICTOR_LLM_PRICES")
    prices = dict(DEFAULT_PRICES)
    if raw is None:
        return prices
    try:
        extra = msgspec.json.decode(raw, type=dict[str, Price])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SettingsError(
            "VICTOR_LLM_PRICES",
            'expected JSON such as {"claude-sonnet-4-5": {"input": 3, "output": 15, '
            f'"cache_read": 0.3, "cache_write": 3.75}}; {exc}',
        ) from None
    for model, price in extra.items():
        if min(price.input, price.output, price.cache_read, price.cache_write) < 0:
            raise SettingsError("VICTOR_LLM_PRICES", f"prices for {model!r} must not be negative")
    prices.update(extra)
    return prices


def _provider(env: EnvReader, settings: Settings) -> ProviderName | None:
    chosen = env.choice("VICTOR_LLM_PROVIDER", "auto", ("auto", "anthropic", "openai"))
    if chosen == "anthropic":
        return "anthropic" if settings.anthropic_api_key else None
    if chosen == "openai":
        return "openai" if settings.openai_api_key or settings.openai_base_url else None
    if settings.anthropic_api_key:
        return "anthropic"
    if settings.openai_api_key or settings.openai_base_url:
        return "openai"
    return None


def load_chat_settings(environ: Mapping[str, str], settings: Settings) -> ChatSettings:
    """Parse the chat variables; raise `SettingsError` naming the first bad one."""
    env = EnvReader(environ)
    provider = _provider(env, settings)
    temperature_raw = env.optional("VICTOR_LLM_TEMPERATURE")
    temperature = env.number("VICTOR_LLM_TEMPERATURE", 0.0) if temperature_raw is not None else None
    if temperature is not None and temperature > 2:
        raise SettingsError(
            "VICTOR_LLM_TEMPERATURE", f"expected a number from 0 to 2, got {temperature_raw!r}"
        )
    return ChatSettings(
        provider=provider,
        model=env.string("VICTOR_LLM_MODEL", DEFAULT_MODELS[provider or "anthropic"]),
        models=tuple(
            part.strip() for part in (env.optional("VICTOR_LLM_MODELS") or "").split(",") if part.strip()
        ),
        max_tokens=env.integer("VICTOR_LLM_MAX_TOKENS", 4096, minimum=1, maximum=1_000_000),
        timeout=env.number("VICTOR_LLM_TIMEOUT", 120.0, minimum=0.001),
        max_retries=env.integer("VICTOR_LLM_MAX_RETRIES", 3, minimum=0, maximum=20),
        retry_max_wait=env.number("VICTOR_LLM_RETRY_MAX_WAIT", 30.0),
        temperature=temperature,
        response_cache=env.boolean("VICTOR_LLM_RESPONSE_CACHE", False),
        response_cache_ttl=env.integer("VICTOR_LLM_RESPONSE_CACHE_TTL", settings.cache_ttl, minimum=1),
        prices=_prices(env),
        max_tool_rounds=env.integer("VICTOR_CHAT_MAX_TOOL_ROUNDS", 8, minimum=1, maximum=1000),
        tools_top_k=env.integer("VICTOR_CHAT_TOOLS_TOP_K", 8, minimum=1, maximum=1000),
        tools_strategy=env.choice(
            "VICTOR_CHAT_TOOLS_STRATEGY", "auto", ("auto", "keyword", "semantic", "hybrid")
        ),
        tools_prune_threshold=env.integer("VICTOR_CHAT_TOOLS_PRUNE_THRESHOLD", 16, minimum=0, maximum=10_000),
        sse_ping=env.number("VICTOR_CHAT_SSE_PING", 15.0, minimum=0.01),
        wait_timeout=env.number("VICTOR_CHAT_WAIT_TIMEOUT", 300.0, minimum=0.001),
    )
