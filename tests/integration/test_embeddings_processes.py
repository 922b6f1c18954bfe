"""The embeddings function as real processes: `victor serve`, functions-framework, and the CLI clients."""

# ruff: noqa: F811 - pytest fixtures imported from tests.support.embeddings

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import numpy as np
import pytest

from tests.support.embeddings import (  # noqa: F401 - fixtures
    copy_code_repo,
    embedding_settings,
    embeddings_app,
    minilm,
    minilm_directory,
    wait_started,
)
from tests.support.foundation import ROOT, clean_env, functions_framework, serving
from tests.support.servers import running

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ("/nonexistent/model", "'/nonexistent/model' is not a directory holding a model"),
        ("nobody/no-such-model", "'nobody/no-such-model' is not in the local Hugging Face cache"),
    ],
)
def test_victor_serve_stops_with_one_line_when_the_model_cannot_be_found(tmp_path, model, problem) -> None:
    env = clean_env(
        VICTOR_EMBEDDING_MODEL=model,
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(tmp_path),
        LANCEDB_URI=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "eventing.cli", "serve", "embeddings", "--host", "127.0.0.1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"victor: VICTOR_EMBEDDING_MODEL: {problem}")


async def test_functions_framework_serves_the_same_routes_after_the_model_loads(
    tmp_path, minilm, services
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "a.md").write_text("Kubernetes pods are scheduled onto nodes.\n")
    env = clean_env(
        VICTOR_EMBEDDING_MODEL=minilm_directory(),
        HF_HUB_OFFLINE="1",
        WORKSPACE_DIR=str(workspace),
        LANCEDB_URI=str(tmp_path / "lancedb"),
        **services.env(),
    )
    async with (
        serving(functions_framework("functions/embeddings/main.py"), env, tmp_path / "ff.log") as served,
        httpx.AsyncClient(base_url=served.url, timeout=60) as http,
    ):
        await wait_started(http, attempts=1200)
        embedded = (await http.post("/v1/embeddings", json={"input": ["pods on nodes"]})).json()
        assert np.allclose(embedded["data"][0]["embedding"], minilm.encode(["pods on nodes"])[0], atol=1e-5)
        assert (await http.post("/v1/index", json={"path": "a.md"})).json()["chunks_added"] == 1
        found = (await http.post("/v1/search", json={"query": "container scheduling"})).json()
        assert [r["path"] for r in found["results"]] == ["a.md"]
        outside = await http.post("/v1/index", json={"path": "../x"})
        assert outside.status_code == 403 and "contains '..'" in outside.json()["detail"]
        bad = await http.post("/v1/search", json={"query": "x", "k": 0})
        assert bad.status_code == 422 and "k must be between 1 and 100" in bad.json()["detail"]


async def run_cli(*argv: str, url: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventing.cli",
        *argv,
        cwd=ROOT,
        env=clean_env(VICTOR_EMBEDDINGS_URL=url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_victor_index_and_search_are_clients_of_the_function(embeddings_app) -> None:
    app, settings = embeddings_app()
    copy_code_repo(settings.workspace_dir)
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        await wait_started(http)
        code, out, _ = await run_cli("index", str(settings.workspace_dir / "shopfront" / "auth"), url=url)
        assert code == 0
        assert (
            out.splitlines()[0]
            == "default: 3 files indexed, 0 unchanged; 5 chunks added, 0 removed; 5 chunks in all"
        )
        code, out, _ = await run_cli("search", "where are passwords hashed", "-k", "2", url=url)
        assert code == 0
        assert out.splitlines()[0].endswith("  shopfront/auth/passwords.py:1-16")
        code, _, err = await run_cli("search", "x", "--collection", "none", url=url)
        assert code == 1
        missing = "collection 'none' does not exist; index something into it first"
        assert err.strip() == f"victor: /v1/search answered 404: {missing}"
        # In the background: the job's id and its status URL at once; the job ends in its record.
        code, out, _ = await run_cli("index", "shopfront/auth", "--background", url=url)
        assert code == 0
        job_id = out.split()[2]
        assert out.strip() == f"index job {job_id} running; follow it at {url}/v1/index/jobs/{job_id}"
        for _ in range(1200):
            job = (await http.get(f"/v1/index/jobs/{job_id}")).json()
            if job["state"] != "running":
                break
            await asyncio.sleep(0.1)
        assert (job["state"], job["result"]["files_unchanged"]) == ("completed", 3)
    code, _, err = await run_cli("search", "x", url="http://127.0.0.1:9")
    assert code == 1 and err.startswith("victor: cannot reach the embeddings function at http://127.0.0.1:9")
