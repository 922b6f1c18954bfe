"""Helpers for the manifest tests: a scratch copy of knative/ to break, and the validator's verdict."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from scripts import validate_manifests

ROOT = Path(__file__).resolve().parents[2]
KNATIVE = ROOT / "knative"


def copy_knative(destination: Path) -> Path:
    """A copy of the repository's knative/ tree under `destination`."""
    target = destination / "knative"
    shutil.copytree(KNATIVE, target)
    return target


def edit_object(file: Path, kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply `change` to the object `kind`/`name` in the multi-document YAML `file`."""
    documents = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
    matches = [d for d in documents if d.get("kind") == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name} not found once in {file}"
    change(matches[0])
    file.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def validate(*paths: Path) -> tuple[int, list[str], str]:
    """Run the validator in-process: exit status, error lines (stderr) and stdout."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = validate_manifests.main([str(p) for p in paths])
    return status, err.getvalue().splitlines(), out.getvalue()


def container(service: dict[str, Any]) -> dict[str, Any]:
    """The first container of a Knative Service's revision template."""
    first: dict[str, Any] = service["spec"]["template"]["spec"]["containers"][0]
    return first


def template_annotations(service: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = service["spec"]["template"]["metadata"].setdefault("annotations", {})
    return annotations
