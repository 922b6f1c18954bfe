"""Costs come from the dated price table; a model without a price is named unpriced, never silently free."""

from __future__ import annotations

import logging
import re
import uuid

import httpx
import pytest

from common.metrics import REGISTRY
from functions.chat.settings import DEFAULT_MODELS, PRICE_TABLE, load_chat_settings
from tests.support.chat import chat_function, chat_settings, fake_openai
from tests.support.fake_openai import Completion


def unpriced_calls(model: str) -> float:
    labels = {"provider": "openai", "model": model}
    return REGISTRY.get_sample_value("victor_llm_unpriced_calls_total", labels) or 0.0


def test_the_price_table_is_dated_and_prices_every_default_model(make_settings) -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", PRICE_TABLE.checked)
    assert PRICE_TABLE.sources
    chat = load_chat_settings({}, make_settings())
    for model in DEFAULT_MODELS.values():
        assert chat.price(model) is not None, model
    # The default OpenAI model, which used to read $0.
    assert chat.cost("gpt-4o-mini", 1_000_000, 1_000_000, 0, 0) > 0
    assert chat.price("gpt-4o-2024-08-06") == PRICE_TABLE.models["gpt-4o"]
    assert chat.price("gpt-4o-mini-2024-07-18") == PRICE_TABLE.models["gpt-4o-mini"]


async def test_a_model_without_a_price_is_named_counted_and_warned_about_once(
    make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    model = f"local-model-{uuid.uuid4().hex[:8]}"
    before = unpriced_calls(model)
    async with fake_openai() as (server, url):
        server.push(
            Completion(text="One.", prompt_tokens=8, completion_tokens=2),
            Completion(text="Two.", prompt_tokens=9, completion_tokens=2),
        )
        chat = chat_settings(provider="openai", model=model)
        async with (
            chat_function(make_settings, chat, OPENAI_BASE_URL=f"{url}/v1") as (chat_url, _),
            httpx.AsyncClient(base_url=chat_url, timeout=30) as client,
        ):
            with caplog.at_level(logging.WARNING, logger="functions.chat.service"):
                first = (await client.post("/v1/chat", json={"message": "one"})).json()
                second = (await client.post("/v1/chat", json={"message": "two"})).json()
    assert first["unpriced_models"] == second["unpriced_models"] == [model]
    assert first["usage"]["cost_usd"] == 0.0
    assert unpriced_calls(model) == before + 2
    warnings = [r.getMessage() for r in caplog.records if model in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"model {model} has no price in functions/chat/prices.json or VICTOR_LLM_PRICES"
    )
