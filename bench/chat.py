"""Chat function benchmark: the latency it adds over calling the same LLM server directly, beside LiteLLM.

    python -m bench.chat [--quick]

A local fake Anthropic server (the tests' `FakeAnthropic`, one fixed reply, in
its own process) stands in for the model, so the model's own time is
near zero and what remains is overhead. Three paths are timed, interleaved
request by request in one run:

- direct: `AsyncAnthropic().messages.create(...)` against the fake server
  (the baseline: what any client pays for one call);
- litellm: the same SDK call through a LiteLLM proxy (a peer gateway, in its
  own process) in front of the same fake server;
- chat: `POST /v1/chat` to the chat function (`victor serve chat`, its own
  process, no broker, no tools function), which stores the conversation and
  the usage in PostgreSQL, makes the same SDK call, publishes progress on
  Redis and answers.

"added" is a path minus direct at the same percentile. LiteLLM is never a
project dependency: it is installed on first use into its own virtual
environment under ~/.cache/victor-bench (LITELLM_VERSION below, from the
package index); without it the table says why and shows the other two paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
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
# 1.110's proxy extra needs a litellm-proxy release the index does not serve; 1.106.12's installs.
LITELLM_VERSION = "1.106.12"
LITELLM_KEY = "sk-bench-master-key-0123456789abcdef"
LITELLM_CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: anthropic/{model}
      api_base: {llm_url}
      api_key: bench-key
litellm_settings:
  telemetry: false
"""


def litellm_command() -> tuple[list[str] | None, str]:
    """The LiteLLM proxy's command from its own virtual environment (made on first use), or why not."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "victor-bench"
    venv = cache / f"litellm-{LITELLM_VERSION}"
    binary = venv / "bin" / "litellm"
    if not binary.exists():
        print(f"installing LiteLLM {LITELLM_VERSION} into {venv} (benchmark only, not a project dependency)")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={LITELLM_VERSION}"],
                check=True,
                timeout=900,
                capture_output=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"LiteLLM could not be installed ({type(exc).__name__}); its row is left out"
    return [str(binary)], ""


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


def serve_litellm(
    stack: contextlib.ExitStack, litellm: list[str], llm_url: str, env: dict[str, str], scratch: Path
) -> str:
    """A LiteLLM proxy in front of the fake server, on loopback, until `stack` closes; its URL."""
    port = free_port()
    config = scratch / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(model=MODEL, llm_url=llm_url))
    proxy = [*litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    # No model price map from the network; the master key only guards the admin routes here.
    proxy_env = {k: v for k, v in env.items() if k not in ("DATABASE_URL", "REDIS_URL")}  # no store
    proxy_env.update(LITELLM_MASTER_KEY=LITELLM_KEY, LITELLM_LOCAL_MODEL_COST_MAP="True")
    stack.enter_context(serving(proxy, proxy_env, port, scratch, "/health/liveliness"))
    return f"http://127.0.0.1:{port}"


async def measure(
    llm_url: str, chat_url: str, litellm_url: str | None, count: int, warmup: int
) -> dict[str, list[float]]:
    import anthropic

    clients = {"direct": anthropic.AsyncAnthropic(api_key="bench-key", base_url=llm_url, max_retries=0)}
    if litellm_url is not None:
        clients["litellm"] = anthropic.AsyncAnthropic(
            api_key=LITELLM_KEY, base_url=litellm_url, max_retries=0
        )
    times: dict[str, list[float]] = {name: [] for name in (*clients, "chat")}
    async with httpx.AsyncClient(base_url=chat_url, timeout=60) as chat:
        for index in range(warmup + count):
            for name, client in clients.items():
                started = time.perf_counter()
                message = await client.messages.create(
                    model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "ping"}]
                )
                elapsed = time.perf_counter() - started
                if getattr(message.content[0], "text", None) != REPLY_TEXT:
                    raise RuntimeError(f"{name} answered {message.content!r}")
                if index >= warmup:
                    times[name].append(elapsed * 1000)
            started = time.perf_counter()
            response = await chat.post("/v1/chat", json={"message": "ping"})
            via_chat = time.perf_counter() - started
            if response.status_code != 200 or response.json()["answer"] != REPLY_TEXT:
                raise RuntimeError(f"chat answered {response.status_code}: {response.text[:300]}")
            if index >= warmup:
                times["chat"].append(via_chat * 1000)
    for client in clients.values():
        await client.close()
    return times


def main() -> None:
    from eventing.dev.stores import configured_or_embedded

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
        for name in ("VICTOR_BROKER_URL", "K_SINK", "VICTOR_TOOLS_URL", "VICTOR_API_KEY", "VICTOR_API_KEYS"):
            env.pop(name, None)
        fake_llm = [PYTHON, "-m", "bench.chat", "serve-fake-llm", str(llm_port)]
        chat_function = [PYTHON, "-m", "eventing.cli", "serve", "chat"]
        litellm, why_not = litellm_command()
        with contextlib.ExitStack() as stack:
            stack.enter_context(serving(fake_llm, env, llm_port, scratch, "/ready"))
            stack.enter_context(serving(chat_function, env, chat_port, scratch, "/health/ready"))
            litellm_url = None
            if litellm is not None:
                litellm_url = serve_litellm(stack, litellm, llm_url, env, scratch)
            times = asyncio.run(measure(llm_url, f"http://127.0.0.1:{chat_port}", litellm_url, count, warmup))
    rows = []
    figures: dict[str, dict[str, float]] = {}
    for name, values in times.items():
        figures[name] = {
            "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99),
            "mean_ms": statistics.fmean(values),
        }
    figures["added"] = {key: figures["chat"][key] - figures["direct"][key] for key in figures["chat"]}
    labels = {
        "direct": "direct SDK call to the LLM server (baseline)",
        "litellm": f"through a LiteLLM {LITELLM_VERSION} proxy (peer)",
        "chat": "POST /v1/chat (store, LLM call, publish, answer)",
        "added_by_litellm": "added by LiteLLM",
        "added": "added by the chat function",
    }
    if "litellm" in figures:
        figures["added_by_litellm"] = {
            key: figures["litellm"][key] - figures["direct"][key] for key in figures["litellm"]
        }
    for name, label in labels.items():
        if name in figures:
            f = figures[name]
            rows.append([label, f["p50_ms"], f["p99_ms"], f["mean_ms"], count])
    print(table(["path", "p50 ms", "p99 ms", "mean ms", "requests"], rows))
    if why_not:
        print(f"\n{why_not}")
    print("\naim: Victor adds no more than LiteLLM at p50 and p99 (both against the same server, same run)")
    print_json("chat", figures)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve-fake-llm":
        serve_fake_llm(int(sys.argv[2]))
    else:
        main()
