"""Secrets given to `victor serve health` never reach its logs or any answer, even when things fail."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from eventing.dev.embedded import free_port
from tests.conftest import Services
from tests.support.foundation import clean_env, serving, unique, victor_serve

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-secret-value-1111",
    "OPENAI_API_KEY": "sk-openai-secret-value-2222",
    "VICTOR_API_KEY": "victor-secret-value-3333",
}
DB_PASSWORD = "pg-secret-password-4444"


async def test_secrets_stay_out_of_logs_and_error_bodies(services: Services, tmp_path: Path) -> None:
    # PostgreSQL is unreachable, so /health, /v1/status and events all take their failure paths.
    database_url = f"postgresql://victor:{DB_PASSWORD}@127.0.0.1:{free_port()}/victor"
    env = clean_env(
        **SECRETS,
        DATABASE_URL=database_url,
        REDIS_URL=services.redis_url,
        VICTOR_LOG_LEVEL="DEBUG",
        WORKSPACE_DIR=str(tmp_path),
    )
    bodies = []
    async with (
        serving(victor_serve(), env, tmp_path / "serve.log") as served,
        httpx.AsyncClient(base_url=served.url, timeout=30) as client,
    ):
        health = await client.get("/health")
        assert health.status_code == 200  # postgres is reported, not required, by the health function
        postgres = next(d for d in health.json()["dependencies"] if d["name"] == "postgres")
        assert (postgres["state"], postgres["error"]) == (
            "down",
            "cannot connect to PostgreSQL: ConnectionRefusedError",
        )
        refused = await client.get("/v1/status")
        assert refused.status_code == 401
        status = await client.get("/v1/status", headers={"x-api-key": SECRETS["VICTOR_API_KEY"]})
        assert status.status_code == 200
        event = await client.post(
            "/",
            headers={
                "ce-specversion": "1.0",
                "ce-id": unique("secrets"),
                "ce-source": "/test/secrets",
                "ce-type": "dev.knative.sources.ping",
            },
        )
        # Without PostgreSQL the event cannot be recorded as handled: retry later.
        assert (event.status_code, event.json()["error"]) == (503, "store_unavailable")
        bodies = [health.text, refused.text, status.text, event.text, (await client.get("/metrics")).text]
    output = served.output()
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    for secret in (*SECRETS.values(), DB_PASSWORD):
        assert secret not in output
        assert all(secret not in body for body in bodies)
