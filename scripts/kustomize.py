"""The subset of kustomize that knative/ uses, so overlays build without a kustomize binary.

Supported kustomization fields: `resources` (YAML files and directories holding a
kustomization.yaml), `namespace`, `labels` (metadata labels only) and `commonLabels`,
`images` (newName/newTag/digest on container images) and `patches` with `path`: either a
strategic-merge patch (maps merge, lists are replaced: kustomize has no merge keys for
custom resources such as Knative Services) or, with a `target` kind and name, a JSON 6902
patch (add, replace, remove), which is how overlays change one container's fields.
Anything else in a kustomization is an error, so a manifest cannot silently rely on a
feature this builder ignores. `kubectl kustomize` gives the same output for this subset.

    python -m scripts.kustomize knative/overlays/production   # prints the built YAML
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "labels", "commonLabels", "images", "patches"}
)
# Kinds that live outside any namespace, so `namespace:` leaves them alone.
CLUSTER_SCOPED_KINDS = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
)


class KustomizeError(Exception):
    """A kustomization cannot be built; the message names the file and the problem."""


@dataclass
class Resource:
    """One Kubernetes object and the file it was read from."""

    origin: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "?"))

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata") or {}
        return str(metadata.get("name", "?")) if isinstance(metadata, dict) else "?"

    def key(self) -> tuple[str, str]:
        return self.kind, self.name


def load_documents(path: Path) -> list[Resource]:
    """Every non-empty YAML document in `path`; each must be a mapping."""
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as exc:
        raise KustomizeError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    resources = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise KustomizeError(f"{path}: document {index + 1} is not a mapping")
        resources.append(Resource(path, document))
    return resources


def build(directory: Path) -> list[Resource]:
    """The objects the kustomization in `directory` produces, in resource order."""
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(kustomization_file.read_text()) or {}
    if not isinstance(spec, dict):
        raise KustomizeError(f"{kustomization_file}: not a mapping")
    unsupported = sorted(set(spec) - SUPPORTED_FIELDS)
    if unsupported:
        raise KustomizeError(
            f"{kustomization_file}: unsupported field(s) {', '.join(unsupported)}; "
            "scripts/kustomize.py supports " + ", ".join(sorted(SUPPORTED_FIELDS))
        )
    resources: list[Resource] = []
    for entry in spec.get("resources") or []:
        target = (directory / str(entry)).resolve()
        if target.is_dir():
            resources.extend(build(target))
        elif target.is_file():
            resources.extend(load_documents(target))
        else:
            raise KustomizeError(f"{kustomization_file}: resource {entry!r} does not exist")
    for patch in spec.get("patches") or []:
        if not isinstance(patch, dict) or "path" not in patch or set(patch) - {"path", "target"}:
            raise KustomizeError(f"{kustomization_file}: a patch needs `path` (and `target` for JSON 6902)")
        patch_file = directory / str(patch["path"])
        if "target" in patch:
            apply_json_patch(resources, patch_file, patch["target"])
        else:
            for document in load_documents(patch_file):
                apply_patch(resources, document)
    if spec.get("namespace"):
        set_namespace(resources, str(spec["namespace"]))
    labels: dict[str, str] = dict(spec.get("commonLabels") or {})
    for group in spec.get("labels") or []:
        labels.update(group.get("pairs") or {})
    if labels:
        add_labels(resources, labels)
    for image in spec.get("images") or []:
        set_image(resources, image)
    return resources


def apply_patch(resources: list[Resource], patch: Resource) -> None:
    """Merge `patch` into the resource with the same kind and name."""
    for resource in resources:
        if resource.key() == patch.key():
            resource.body = strategic_merge(resource.body, patch.body)
            return
    raise KustomizeError(f"{patch.origin}: patch target {patch.kind}/{patch.name} is not among the resources")


def strategic_merge(base: Any, patch: Any) -> Any:
    """`patch` merged into a copy of `base`: maps merge key by key, a null deletes, anything else replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    return copy.deepcopy(patch)


def apply_json_patch(resources: list[Resource], patch_file: Path, target: Any) -> None:
    """Apply the RFC 6902 operations in `patch_file` to the resource `target` names."""
    if not isinstance(target, dict) or "kind" not in target or "name" not in target:
        raise KustomizeError(f"{patch_file}: a JSON 6902 patch target needs kind and name")
    try:
        operations = yaml.safe_load(patch_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KustomizeError(f"{patch_file}: cannot read the patch: {str(exc).splitlines()[0]}") from None
    if not isinstance(operations, list):
        raise KustomizeError(f"{patch_file}: a JSON 6902 patch is a list of operations")
    matches = [r for r in resources if r.key() == (str(target["kind"]), str(target["name"]))]
    if not matches:
        raise KustomizeError(
            f"{patch_file}: patch target {target['kind']}/{target['name']} is not among the resources"
        )
    for operation in operations:
        apply_operation(matches[0].body, operation, patch_file)


def apply_operation(document: dict[str, Any], operation: Any, patch_file: Path) -> None:
    if not isinstance(operation, dict) or operation.get("op") not in ("add", "replace", "remove"):
        raise KustomizeError(
            f"{patch_file}: supported operations are add, replace and remove; got {operation!r}"
        )
    pointer = str(operation.get("path", ""))
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    if not tokens:
        raise KustomizeError(f"{patch_file}: operation path {pointer!r} is not a JSON pointer")
    parent: Any = document
    try:
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        op = operation["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                parent.insert(index, copy.deepcopy(operation["value"]))
            elif op == "replace":
                parent[index] = copy.deepcopy(operation["value"])
            else:
                del parent[index]
        elif op == "remove":
            del parent[last]
        elif op == "replace" and last not in parent:
            raise KeyError(last)
        else:
            parent[last] = copy.deepcopy(operation["value"])
    except (KeyError, IndexError, ValueError, TypeError):
        raise KustomizeError(f"{patch_file}: path {pointer!r} does not exist in the target") from None


def set_namespace(resources: list[Resource], namespace: str) -> None:
    for resource in resources:
        if resource.kind not in CLUSTER_SCOPED_KINDS:
            resource.body.setdefault("metadata", {})["namespace"] = namespace


def add_labels(resources: list[Resource], labels: dict[str, str]) -> None:
    for resource in resources:
        metadata = resource.body.setdefault("metadata", {})
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}


def set_image(resources: list[Resource], image: dict[str, Any]) -> None:
    """Rewrite every container image named `image["name"]` (any tag) as kustomize's `images` does."""
    name = str(image["name"])
    for resource in resources:
        spec = ((resource.body.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in spec.get("containers") or []:
            current = str(container.get("image", ""))
            without_digest = current.split("@", 1)[0]
            # A tag is a colon after the last slash (a colon before it is a registry port).
            colon = without_digest.rfind(":")
            repository = without_digest[:colon] if colon > without_digest.rfind("/") else without_digest
            if repository != name:
                continue
            new = str(image.get("newName", name))
            if "digest" in image:
                container["image"] = f"{new}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{new}:{image['newTag']}"
            else:
                container["image"] = new


def render(resources: list[Resource]) -> str:
    """The objects as one multi-document YAML stream."""
    return yaml.safe_dump_all([r.body for r in resources], sort_keys=False, explicit_start=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scripts.kustomize DIRECTORY", file=sys.stderr)
        return 2
    try:
        print(render(build(Path(args[0]))), end="")
    except KustomizeError as exc:
        print(f"kustomize: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
