"""`victor serve health` on SIGTERM: stops taking connections, finishes in-flight requests, exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import Services
from tests.support.foundation import FakeFunction, clean_env, functions_framework, serving, victor_serve
from tests.support.servers import running


@pytest.mark.parametrize(
    "command", [victor_serve(), functions_framework()], ids=["victor-serve", "functions-framework"]
)
async def test_an_in_flight_request_finishes_after_sigterm_then_the_process_exits_0(
    command: list[str], services: Services, tmp_path: Path
) -> None:
    # /v1/status waits on the chat function's readiness, which this fake holds open until told.
    chat = FakeFunction(hold=True)
    async with running(chat.app()) as chat_url:
        env = clean_env(**services.env(), VICTOR_CHAT_URL=chat_url, WORKSPACE_DIR=str(tmp_path))
        async with serving(command, env, tmp_path / "serve.log") as served:
            async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
                in_flight = asyncio.create_task(client.get("/v1/status"))
                await asyncio.wait_for(chat.arrived.wait(), 30)

                served.process.send_signal(signal.SIGTERM)

                # Shutdown has begun once new connections are refused; the request is still open.
                async with httpx.AsyncClient(base_url=served.url, timeout=2) as newcomer:
                    for _ in range(200):
                        try:
                            await newcomer.get("/health/live")
                        except httpx.TransportError:
                            break
                        await asyncio.sleep(0.02)
                    else:
                        raise AssertionError("the server kept accepting connections after SIGTERM")
                assert not in_flight.done()

                chat.release.set()
                response = await in_flight
            exit_code = await asyncio.to_thread(served.process.wait, 30)

    assert response.status_code == 200
    components = {c["name"]: c["state"] for c in response.json()["components"]}
    assert components == {"redis": "up", "postgres": "up", "chat": "up"}
    assert exit_code == 0
    # Everything the process printed is JSON lines, the shutdown included.
    lines = [json.loads(line) for line in served.output().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    if command == victor_serve():  # functions-framework keeps uvicorn's own logs at error level
        assert any("shutting down" in line["message"].lower() for line in lines)
