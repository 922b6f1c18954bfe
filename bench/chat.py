"""Chat function benchmark: the latency it adds over calling the same LLM server directly with the SDK.

    python -m bench.chat [--quick]

A local fake Anthropic server (the tests' `FakeAnthropic`, one fixed reply, in
its own process) stands in for the model, so the model's own time is
near zero and what remains is overhead. Two paths are timed, interleaved
request by request in one run:

- direct: `AsyncAnthropic().messages.create(...)` against the fake server
  (the baseline: what any client pays for one call);
- chat: `POST /v1/chat` to the chat function (`victor serve chat`, its own
  process, no broker, no tools function), which stores the conversation and
  the usage in PostgreSQL, makes the same SDK call, publishes progress on
  Redis and answers.

"added" is chat minus direct at the same percentile.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import Any

import httpx

from bench.support import (
    PYTHON,
    free_port,
    percentile,
    print_header,
    print_json,
    quick,
    scratch_dir,
    serving,
    table,
)

REPLY_TEXT = "pong"
MODEL = "claude-sonnet-4-5"


def serve_fake_llm(port: int) -> None:
    """Serve the fake Anthropic server with one fixed reply (runs in its own process)."""
    import uvicorn

    from tests.support.fake_anthropic import FakeAnthropic, Reply, text

    server = FakeAnthropic(default=Reply([text(REPLY_TEXT)], input_tokens=12, output_tokens=2))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/ready":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        server.requests.clear()  # the record is for tests; a long run must not grow it
        await server(scope, receive, send)

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


async def measure(llm_url: str, chat_url: str, count: int, warmup: int) -> dict[str, list[float]]:
    import anthropic

    direct_client = anthropic.AsyncAnthropic(api_key="bench-key", base_url=llm_url, max_retries=0)
    times: dict[str, list[float]] = {"direct": [], "chat": []}
    async with httpx.AsyncClient(base_url=chat_url, timeout=60) as chat:
        for index in range(warmup + count):
            started = time.perf_counter()
            await direct_client.messages.create(
                model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "ping"}]
            )
            direct = time.perf_counter() - started
            started = time.perf_counter()
            response = await chat.post("/v1/chat", json={"message": "ping"})
            via_chat = time.perf_counter() - started
            if response.status_code != 200 or response.json()["answer"] != REPLY_TEXT:
                raise RuntimeError(f"chat answered {response.status_code}: {response.text[:300]}")
            if index >= warmup:
                times["direct"].append(direct * 1000)
                times["chat"].append(via_chat * 1000)
    await direct_client.close()
    return times


def main() -> None:
    from eventing.dev.services import configured_or_embedded

    count, warmup = (100, 10) if quick() else (1000, 50)
    print_header("Chat function: latency added over a direct SDK call")
    with (
        scratch_dir("victor-bench-chat-") as scratch,
        configured_or_embedded(scratch, os.environ) as (database_url, redis_url),
    ):
        llm_port, chat_port = free_port(), free_port()
        llm_url = f"http://127.0.0.1:{llm_port}"
        env = {
            **os.environ,
            "PORT": str(chat_port),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ANTHROPIC_API_KEY": "bench-key",
            "ANTHROPIC_BASE_URL": llm_url,
            "VICTOR_LLM_MODEL": MODEL,
            "VICTOR_LOG_LEVEL": "WARNING",
        }
        for name in ("VICTOR_BROKER_URL", "K_SINK", "VICTOR_TOOLS_URL", "VICTOR_API_KEY"):
            env.pop(name, None)
        fake_llm = [PYTHON, "-m", "bench.chat", "serve-fake-llm", str(llm_port)]
        chat_function = [PYTHON, "-m", "eventing.cli", "serve", "chat"]
        with (
            serving(fake_llm, env, llm_port, scratch, "/ready"),
            serving(chat_function, env, chat_port, scratch, "/health/ready"),
        ):
            times = asyncio.run(measure(llm_url, f"http://127.0.0.1:{chat_port}", count, warmup))
    rows = []
    figures: dict[str, dict[str, float]] = {}
    for name in ("direct", "chat"):
        values = times[name]
        figures[name] = {
            "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99),
            "mean_ms": statistics.fmean(values),
        }
    figures["added"] = {key: figures["chat"][key] - figures["direct"][key] for key in figures["chat"]}
    labels = {
        "direct": "direct SDK call to the LLM server (baseline)",
        "chat": "POST /v1/chat (store, LLM call, publish, answer)",
        "added": "added by the chat function",
    }
    for name, label in labels.items():
        f = figures[name]
        rows.append([label, f["p50_ms"], f["p99_ms"], f["mean_ms"], count])
    print(table(["path", "p50 ms", "p99 ms", "mean ms", "requests"], rows))
    print("\naim: p50 added under 2 ms (the best published gateway adds 2 ms at p50 and 13 ms at p99)")
    print_json("chat", figures)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve-fake-llm":
        serve_fake_llm(int(sys.argv[2]))
    else:
        main()
