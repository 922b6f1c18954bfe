"""requirements.lock: what pyproject.toml asks for, installable from the public package index
alone on every platform and Python the project supports (uv resolves each target's wheels,
with none of this machine's pip configuration, wheel cache or local indexes)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.foundation import ROOT, VENV_BIN

UV = VENV_BIN / "uv"
# (uv's --python-platform, the macOS release it targets): torch 2.13 has macOS wheels from 14 on.
PLATFORMS = [
    ("x86_64-manylinux_2_28", None),
    ("aarch64-manylinux_2_28", None),
    ("aarch64-apple-darwin", "14.0"),
]
PYTHONS = ["3.11", "3.12", "3.13"]


def public_index_env(**overrides: str) -> dict[str, str]:
    """uv with no configuration of this machine's: only PyPI, trusting the system's CA bundle."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("UV_", "PIP_"))}
    env.update(UV_NO_CONFIG="1", UV_NATIVE_TLS="1", **overrides)
    return env


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize(("platform", "macos"), PLATFORMS)
def test_the_lock_installs_from_the_public_index(
    tmp_path: Path, platform: str, macos: str | None, python: str
) -> None:
    env = public_index_env(**({"MACOSX_DEPLOYMENT_TARGET": macos} if macos else {}))
    resolved = subprocess.run(
        [str(UV), "pip", "install", "--dry-run", "--only-binary", ":all:", "--target", str(tmp_path),
         "--python-platform", platform, "--python-version", python, "-r", str(ROOT / "requirements.lock")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr[-2000:]
    assert "Would install" in resolved.stderr


def test_the_lock_is_what_scripts_lock_sh_writes_from_pyproject(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "lock.sh", tmp_path / "scripts" / "lock.sh")
    written = subprocess.run(
        ["sh", "scripts/lock.sh"], cwd=tmp_path, env=public_index_env(UV=str(UV)),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "requirements.lock").read_text() == (ROOT / "requirements.lock").read_text()
    assert "\ntorch==2.13.0\n" in (tmp_path / "requirements.lock").read_text()  # no local label
