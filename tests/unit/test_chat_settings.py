"""Chat settings, prices, retry-after parsing and the tool selection answer, as specifications."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.settings import SettingsError, load_settings
from functions.chat.providers.base import is_retryable_status, retry_after_seconds
from functions.chat.settings import DEFAULT_PRICES, Price, load_chat_settings


def chat(**env: str):
    return load_chat_settings(env, load_settings(env))


def test_provider_is_chosen_from_the_keys_given() -> None:
    assert chat().provider is None
    assert chat(ANTHROPIC_API_KEY="k").provider == "anthropic"
    assert chat(OPENAI_BASE_URL="http://127.0.0.1:11434/v1").provider == "openai"
    assert chat(ANTHROPIC_API_KEY="k", OPENAI_API_KEY="o").provider == "anthropic"
    assert chat(ANTHROPIC_API_KEY="k", OPENAI_API_KEY="o", VICTOR_LLM_PROVIDER="openai").provider == "openai"
    assert chat(VICTOR_LLM_PROVIDER="anthropic", OPENAI_API_KEY="o").provider is None


def test_defaults_follow_the_provider() -> None:
    assert chat(ANTHROPIC_API_KEY="k").model == "claude-sonnet-5-5"
    assert chat(OPENAI_API_KEY="o").model == "gpt-4o-mini"
    assert chat(ANTHROPIC_API_KEY="k", VICTOR_LLM_MODEL="claude-haiku-4-5").model == "claude-haiku-4-5"
    # Each provider's default has a list price (Sonnet 5.5: $2 / $10, cache $0.20 / $2.50 per MTok).
    assert chat().price("claude-sonnet-5-5") == Price(input=2, output=10, cache_read=0.2, cache_write=2.5)
    assert chat().price("gpt-4o-mini") is not None


def test_cost_is_exact_and_uses_the_longest_matching_price_prefix() -> None:
    settings = chat()
    # A dated model id matches its family's price.
    assert settings.price("claude-sonnet-4-5-20250929") == DEFAULT_PRICES["claude-sonnet-4-5"]
    assert settings.price("claude-opus-4-1-20250805") == DEFAULT_PRICES["claude-opus-4-1"]
    assert settings.cost("claude-sonnet-4-5", 1_000_000, 1_000_000, 1_000_000, 1_000_000) == Decimal("22.05")
    assert settings.cost("claude-haiku-4-5", 3, 7, 11, 13) == Decimal(
        "0.00005535"
    )  # 3*1 + 7*5 + 11*0.1 + 13*1.25 = 55.35 per million
    assert settings.cost("unknown-model", 1000, 1000, 0, 0) == Decimal(0)


def test_prices_can_be_overridden_with_json() -> None:
    settings = chat(
        VICTOR_LLM_PRICES='{"my-model": {"input": 1.5, "output": 2},'
        ' "claude-sonnet-4-5": {"input": 1, "output": 1}}'
    )
    assert settings.prices["my-model"] == Price(input=1.5, output=2)
    assert settings.cost("my-model-v2", 2_000_000, 0, 0, 0) == Decimal("3")
    assert settings.prices["claude-sonnet-4-5"] == Price(input=1, output=1)
    assert settings.prices["claude-opus-4"] == DEFAULT_PRICES["claude-opus-4"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VICTOR_LLM_PRICES": "not json"}, "VICTOR_LLM_PRICES: expected JSON such as"),
        (
            {"VICTOR_LLM_PRICES": '{"m": {"input": -1, "output": 1}}'},
            "VICTOR_LLM_PRICES: prices for 'm' must not be negative",
        ),
        ({"VICTOR_LLM_MAX_TOKENS": "0"}, "VICTOR_LLM_MAX_TOKENS: expected an integer >= 1"),
        ({"VICTOR_LLM_TIMEOUT": "soon"}, "VICTOR_LLM_TIMEOUT: expected a number"),
        ({"VICTOR_LLM_TEMPERATURE": "3"}, "VICTOR_LLM_TEMPERATURE: expected a number from 0 to 2, got '3'"),
        ({"VICTOR_LLM_PROVIDER": "bard"}, "VICTOR_LLM_PROVIDER: expected one of auto, anthropic, openai"),
        (
            {"VICTOR_CHAT_TOOLS_STRATEGY": "magic"},
            "VICTOR_CHAT_TOOLS_STRATEGY: expected one of auto, keyword",
        ),
        ({"VICTOR_LLM_RESPONSE_CACHE": "maybe"}, "VICTOR_LLM_RESPONSE_CACHE: expected one of true, false"),
    ],
)
def test_bad_values_name_the_variable_in_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        chat(**env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_retry_after_is_read_from_milliseconds_or_seconds() -> None:
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_seconds({}) is None


def test_only_429_529_and_5xx_are_retryable() -> None:
    assert [
        s for s in (400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 529) if is_retryable_status(s)
    ] == [
        429,
        500,
        502,
        503,
        529,
    ]


def test_the_metrics_model_label_is_a_configured_model_or_other() -> None:
    settings = chat(
        ANTHROPIC_API_KEY="k",
        VICTOR_LLM_MODEL="claude-sonnet-4-5",
        VICTOR_LLM_MODELS=" claude-haiku-4-5, ,gpt-4o",
    )
    assert settings.models == ("claude-haiku-4-5", "gpt-4o")
    assert settings.model_label("claude-sonnet-4-5") == "claude-sonnet-4-5"
    assert settings.model_label("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert settings.model_label("gpt-4o") == "gpt-4o"
    assert settings.model_label("gpt-4o-mini") == "gpt-4o"  # extends a listed model, still a bounded label
    assert settings.model_label("claude-sonnet-4") == "other"
    assert settings.model_label('x"} 1\nvictor_fake{a="') == "other"
