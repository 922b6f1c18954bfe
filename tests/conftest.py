"""Shared fixtures: real PostgreSQL and Redis (embedded unless DATABASE_URL/REDIS_URL are set)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.settings import Settings, load_settings
from eventing.dev.stores import configured_or_embedded


class Services:
    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url

    def env(self, **overrides: str) -> dict[str, str]:
        env = {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}
        env.update(overrides)
        return env


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """PostgreSQL and Redis for the whole run: the configured URLs, else embedded servers."""
    # Not under pytest's temp root: each pytest run resets that to mode 0700, and as root pgserver
    # runs PostgreSQL as its own user, which then could not reach a data directory inside it.
    root = Path(tempfile.mkdtemp(prefix="victor-test-services-"))
    try:
        with configured_or_embedded(root, os.environ) as (database_url, redis_url):
            yield Services(database_url, redis_url)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_settings(services: Services, tmp_path: Path) -> Callable[..., Settings]:
    """Settings from a clean environment with the test's services and a temporary workspace."""

    def build(**env: str) -> Settings:
        base = services.env(WORKSPACE_DIR=str(tmp_path / "workspace"), LANCEDB_URI=str(tmp_path / "lancedb"))
        base.update(env)
        (tmp_path / "workspace").mkdir(exist_ok=True)
        return load_settings(base)

    return build
