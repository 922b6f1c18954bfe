"""An install without the embeddings extra: `victor serve embeddings` says which extra to install.

The extra's packages are hidden from the import system (a sitecustomize wraps every finder),
as in `pip install victor-functions` with no extras; the other functions still start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.foundation import ROOT, clean_env

HIDE = """
import sys

HIDDEN = {"onnxruntime", "tokenizers", "lancedb", "pyarrow", "sentence_transformers", "transformers", "torch"}


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


def without_the_extra(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(HIDE)
    return clean_env(PYTHONPATH=f"{tmp_path}:{ROOT}", PORT="1")


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
