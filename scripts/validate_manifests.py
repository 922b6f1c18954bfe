"""Validate the Knative manifests the way a cluster would, without a cluster.

    python -m scripts.validate_manifests [PATH...]

Each PATH is a kustomization directory (built with scripts/kustomize.py) or a YAML
file; with none, knative/base and every knative/overlays/* are checked. Every
Knative object is checked against its CRD's openAPIV3Schema (unknown fields are
errors, as with kubectl's strict field validation, except where the schema preserves
them), then against the rules Knative's admission webhooks enforce that the schemas
do not. Each problem is printed as one line, `FILE (BUILD): KIND/NAME: RULE: MESSAGE`;
the exit status is 1 when there is any.

The CRDs are read from knative/crds (copies of Knative's own, see its SOURCES.md),
or from the directory in $VICTOR_KNATIVE_CRDS.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from eventing.knative_grammar import delivery_problems, trigger_filter_problems
from scripts.kustomize import KustomizeError, Resource, build, load_documents

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CRDS = ROOT / "knative" / "crds"
NAMESPACE = "victor"

RESERVED_PORTS = (8012, 8013, 8022, 9090, 9091, 8008)
RESERVED_ENV = ("PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION")
PORT_NAMES = ("http1", "h2c")
MAX_CONTAINER_CONCURRENCY = 1000  # config-defaults container-concurrency-max-limit
MAX_TIMEOUT_SECONDS = 600  # config-defaults max-revision-timeout-seconds

AUTOSCALING = "autoscaling.knative.dev/"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
METRICS_BY_CLASS = {KPA: ("concurrency", "rps"), HPA: ("cpu", "memory")}
# Go duration strings (time.ParseDuration), which Knative uses for its duration annotations.
GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$")
GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
KNOWN_AUTOSCALING_KEYS = frozenset(
    {
        "class",
        "metric",
        "target",
        "target-utilization-percentage",
        "min-scale",
        "max-scale",
        "initial-scale",
        "window",
        "panic-window-percentage",
        "panic-threshold-percentage",
        "scale-to-zero-pod-retention-period",
        "scale-down-delay",
        "activation-scale",
        "target-burst-capacity",
        "metric-aggregation-algorithm",
    }
)


@dataclass(frozen=True)
class Problem:
    """One rule one object breaks."""

    origin: str
    build: str
    kind: str
    name: str
    rule: str
    message: str

    def line(self) -> str:
        where = self.origin if self.build in ("", self.origin) else f"{self.origin} ({self.build})"
        return f"{where}: {self.kind}/{self.name}: {self.rule}: {self.message}"


# --- CRD schemas -------------------------------------------------------------------


def openapi_to_json_schema(node: Any, *, strict: bool = True) -> Any:
    """A JSON Schema equivalent of a Kubernetes structural (OpenAPI v3) schema.

    x-kubernetes-* keys are dropped after taking their meaning: int-or-string becomes
    anyOf integer/string, preserve-unknown-fields keeps unknown keys, and every other
    object with `properties` forbids unknown keys (kubectl's strict field validation).
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("description", "nullable", "default", "format"):
            continue
        if key == "properties":
            out[key] = {name: openapi_to_json_schema(sub, strict=strict) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = openapi_to_json_schema(value, strict=strict)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [openapi_to_json_schema(sub, strict=strict) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if strict and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


class SchemaCatalog:
    """The v1 schema of every CRD in a directory, by (group, version, kind)."""

    def __init__(self, directory: Path) -> None:
        self.validators: dict[tuple[str, str, str], jsonschema.protocols.Validator] = {}
        for path in sorted(directory.rglob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                root = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                # The API server adds these to every root schema; some CRDs leave them out.
                implicit = {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                }
                root["properties"] = {**implicit, **root.get("properties", {})}
                schema = openapi_to_json_schema(root)
                self.validators[(group, version["name"], kind)] = jsonschema.Draft7Validator(schema)

    def validator(self, api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
        group, _, version = api_version.rpartition("/")
        return self.validators.get((group, version, kind))


def schema_problems(catalog: SchemaCatalog, body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    api_version, kind = str(body.get("apiVersion", "")), str(body.get("kind", ""))
    validator = catalog.validator(api_version, kind)
    if validator is None:
        yield "schema", f"no CRD schema for {api_version} {kind} (known: knative.dev CRDs in the catalog)"
        return
    for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        location = ".".join(str(p) for p in error.absolute_path) or "(root)"
        yield "schema", f"{location}: {error.message}"


# --- webhook rules --------------------------------------------------------------------


def go_duration_seconds(text: str) -> float | None:
    """Seconds in a Go duration string ("90s", "1h30m", "0"), or None when it is not one."""
    if text == "0":
        return 0.0
    if not GO_DURATION.match(text):
        return None
    return sum(
        float(n) * GO_UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    )


def autoscaling_problems(annotations: dict[str, Any], where: str) -> Iterator[tuple[str, str]]:
    """The ranges Knative's webhook enforces on autoscaling.knative.dev/* annotations."""
    values = {k[len(AUTOSCALING) :]: str(v) for k, v in annotations.items() if k.startswith(AUTOSCALING)}
    for key in sorted(set(values) - KNOWN_AUTOSCALING_KEYS):
        yield "autoscaling", f"{where}{AUTOSCALING}{key} is not a Knative autoscaling annotation"

    def integer(key: str, minimum: int) -> int | None:
        if key not in values:
            return None
        try:
            number = int(values[key])
        except ValueError:
            problems.append(f"{where}{AUTOSCALING}{key}={values[key]!r} is not an integer")
            return None
        if number < minimum:
            problems.append(f"{where}{AUTOSCALING}{key}={number} must be >= {minimum}")
        return number

    def number(key: str, low: float, high: float | None = None) -> None:
        if key not in values:
            return
        try:
            value = float(values[key])
        except ValueError:
            problems.append(f"{where}{AUTOSCALING}{key}={values[key]!r} is not a number")
            return
        if value < low or (high is not None and value > high):
            bounds = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
            problems.append(f"{where}{AUTOSCALING}{key}={values[key]} must be {bounds}")

    def duration(key: str, low: float, high: float) -> None:
        if key not in values:
            return
        seconds = go_duration_seconds(values[key])
        if seconds is None:
            problems.append(f"{where}{AUTOSCALING}{key}={values[key]!r} is not a duration such as 60s or 10m")
        elif not low <= seconds <= high:
            problems.append(f"{where}{AUTOSCALING}{key}={values[key]} must be between {low:g}s and {high:g}s")

    problems: list[str] = []
    minimum, maximum = integer("min-scale", 0), integer("max-scale", 0)
    if minimum is not None and maximum is not None and maximum > 0 and minimum > maximum:
        problems.append(f"{where}{AUTOSCALING}min-scale={minimum} is greater than max-scale={maximum}")
    initial = integer("initial-scale", 0)
    if initial == 0:
        problems.append(
            f"{where}{AUTOSCALING}initial-scale=0 needs allow-zero-initial-scale "
            "in config-autoscaler; use >= 1"
        )
    integer("activation-scale", 1)
    number("target", 0.01)
    number("target-utilization-percentage", 1, 100)
    number("panic-window-percentage", 1, 100)
    number("panic-threshold-percentage", 110, 1000)
    number("target-burst-capacity", -1)
    duration("window", 6, 3600)
    duration("scale-to-zero-pod-retention-period", 0, 3600)
    duration("scale-down-delay", 0, 3600)
    autoscaler_class = values.get("class", KPA)
    metric = values.get("metric")
    if metric is not None:
        if metric not in ("concurrency", "rps", "cpu", "memory"):
            problems.append(f"{where}{AUTOSCALING}metric={metric!r} must be concurrency, rps, cpu or memory")
        elif autoscaler_class in METRICS_BY_CLASS and metric not in METRICS_BY_CLASS[autoscaler_class]:
            allowed = " or ".join(METRICS_BY_CLASS[autoscaler_class])
            problems.append(
                f"{where}{AUTOSCALING}metric={metric} does not work with class {autoscaler_class} ({allowed})"
            )
    for problem in problems:
        yield "autoscaling", problem


def serving_features(origin: Path) -> dict[str, str]:
    """Knative Serving's feature flags as the nearest cluster/config-features.yaml above `origin`
    enables them (knative/cluster/ beside base/ and overlays/); none found: the defaults (all off)."""
    for directory in origin.resolve().parents:
        path = directory / "cluster" / "config-features.yaml"
        if path.is_file():
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            return {str(k): str(v) for k, v in (document.get("data") or {}).items()}
    return {}


def volume_problems(spec: dict[str, Any], features: dict[str, str]) -> Iterator[tuple[str, str]]:
    """The webhook refuses PersistentVolumeClaims unless the cluster's feature flags allow them."""
    claims = {
        volume.get("name"): volume["persistentVolumeClaim"]
        for volume in spec.get("volumes") or []
        if "persistentVolumeClaim" in volume
    }
    if not claims:
        return
    if features.get("kubernetes.podspec-persistent-volume-claim") != "enabled":
        yield (
            "feature-flag",
            "a persistentVolumeClaim volume needs kubernetes.podspec-persistent-volume-claim: enabled "
            "in knative/cluster/config-features.yaml",
        )
    writable = [
        mount
        for container in spec.get("containers") or []
        for mount in container.get("volumeMounts") or []
        if mount.get("name") in claims
        and not mount.get("readOnly")
        and not claims[mount["name"]].get("readOnly")
    ]
    if writable and features.get("kubernetes.podspec-persistent-volume-write") != "enabled":
        yield (
            "feature-flag",
            f"{writable[0].get('mountPath')} writes to a persistentVolumeClaim, which needs "
            "kubernetes.podspec-persistent-volume-write: enabled in knative/cluster/config-features.yaml",
        )


def service_problems(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Knative Serving's webhook rules for a Service's revision template."""
    yield from autoscaling_problems(
        (body.get("metadata") or {}).get("annotations") or {}, "metadata.annotations "
    )
    template = (body.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    yield from autoscaling_problems(annotations, "")
    spec = template.get("spec") or {}
    concurrency = spec.get("containerConcurrency")
    if isinstance(concurrency, int) and not 0 <= concurrency <= MAX_CONTAINER_CONCURRENCY:
        yield "container-concurrency", f"containerConcurrency={concurrency} must be between 0 and 1000"
    timeout = spec.get("timeoutSeconds")
    if isinstance(timeout, int) and not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        yield "timeout", f"timeoutSeconds={timeout} must be between 1 and {MAX_TIMEOUT_SECONDS}"
    containers = spec.get("containers") or []
    ports = [(c.get("name", "?"), p) for c in containers for p in (c.get("ports") or [])]
    if len(ports) != 1:
        yield "one-port", f"expected exactly one container port in the revision, found {len(ports)}"
    for container_name, port in ports:
        number = port.get("containerPort")
        if number in RESERVED_PORTS:
            reserved = ", ".join(map(str, RESERVED_PORTS))
            yield (
                "reserved-port",
                f"container {container_name} port {number} is reserved by Knative ({reserved})",
            )
        if "name" in port and port["name"] not in PORT_NAMES:
            yield "port-name", f"container {container_name} port name {port['name']!r} must be http1 or h2c"
    for container in containers:
        for variable in container.get("env") or []:
            if variable.get("name") in RESERVED_ENV:
                yield (
                    "reserved-env",
                    f"container {container.get('name', '?')} sets {variable['name']}, which Knative reserves "
                    f"({', '.join(RESERVED_ENV)})",
                )


def trigger_problems(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    spec = body.get("spec") or {}
    if not spec.get("broker"):
        yield "broker", "spec.broker is required"
    yield from trigger_filter_problems(spec, "spec")
    subscriber = spec.get("subscriber") or {}
    if not subscriber.get("ref") and not subscriber.get("uri"):
        yield "subscriber", "spec.subscriber needs a ref or a uri"
    if spec.get("delivery") is not None:
        yield from delivery_problems(spec["delivery"], "spec.delivery")


def pingsource_problems(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    spec = body.get("spec") or {}
    schedule = str(spec.get("schedule", ""))
    if not (schedule.startswith("@") or len(schedule.split()) == 5):
        yield "schedule", f"spec.schedule {schedule!r} is not a five-field cron expression"
    if "data" in spec and "dataBase64" in spec:
        yield "data", "spec.data and spec.dataBase64 are mutually exclusive"
    if spec.get("contentType") == "application/json" and "data" in spec:
        try:
            json.loads(str(spec["data"]))
        except ValueError:
            yield "data", "spec.data is not JSON although contentType is application/json"


def reference_problems(resources: list[Resource]) -> Iterator[tuple[Resource, str, str]]:
    """Every ref (subscriber, dead-letter sink, PingSource sink) must name an object of the build."""
    present = {(r.kind, r.name) for r in resources}

    def check(resource: Resource, ref: Any, where: str) -> Iterator[tuple[Resource, str, str]]:
        if isinstance(ref, dict) and (str(ref.get("kind")), str(ref.get("name"))) not in present:
            yield (
                resource,
                "dangling-ref",
                f"{where} names {ref.get('kind')}/{ref.get('name')}, which is not in the build",
            )

    for resource in resources:
        spec = resource.body.get("spec") or {}
        if resource.kind == "Trigger":
            yield from check(resource, (spec.get("subscriber") or {}).get("ref"), "spec.subscriber.ref")
            if spec.get("broker") and ("Broker", spec["broker"]) not in present:
                yield (
                    resource,
                    "dangling-ref",
                    f"spec.broker names Broker/{spec['broker']}, which is not in the build",
                )
        if resource.kind in ("Broker", "Trigger"):
            sink = ((spec.get("delivery") or {}).get("deadLetterSink") or {}).get("ref")
            yield from check(resource, sink, "spec.delivery.deadLetterSink.ref")
        if resource.kind == "PingSource":
            yield from check(resource, (spec.get("sink") or {}).get("ref"), "spec.sink.ref")


def configmap_problems(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The API server refuses non-string ConfigMap data (YAML turns `true` and `10` into other types)."""
    for key, value in (body.get("data") or {}).items():
        if not isinstance(value, str):
            yield "configmap-string", f"data.{key} is {type(value).__name__} {value!r}; quote it as a string"


def secret_problems(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if body.get("data") or body.get("stringData"):
        yield "no-secret-values", "Secret values never go in the repository; create the Secret out of band"


def broker_problems(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    delivery = (body.get("spec") or {}).get("delivery")
    if delivery is not None:
        yield from delivery_problems(delivery, "spec.delivery")


KindRules = Callable[[dict[str, Any]], Iterator[tuple[str, str]]]
KIND_RULES: dict[tuple[str, str], KindRules] = {
    ("serving.knative.dev", "Service"): service_problems,
    ("eventing.knative.dev", "Trigger"): trigger_problems,
    ("sources.knative.dev", "PingSource"): pingsource_problems,
    ("eventing.knative.dev", "Broker"): broker_problems,
    ("", "ConfigMap"): configmap_problems,
    ("", "Secret"): secret_problems,
}


def validate_resources(resources: list[Resource], catalog: SchemaCatalog, build_name: str) -> list[Problem]:
    """Every problem of the objects of one build."""
    problems: list[Problem] = []

    def add(resource: Resource, rule: str, message: str) -> None:
        origin = shown(resource.origin)
        problems.append(Problem(origin, build_name, resource.kind, resource.name, rule, message))

    for resource in resources:
        body = resource.body
        group = str(body.get("apiVersion", "")).rpartition("/")[0]
        if not body.get("apiVersion") or not body.get("kind") or resource.name == "?":
            add(resource, "object", "apiVersion, kind and metadata.name are required")
            continue
        namespace = (body.get("metadata") or {}).get("namespace")
        if resource.kind != "Namespace" and namespace not in (None, NAMESPACE):
            add(resource, "namespace", f"metadata.namespace is {namespace!r}; Victor lives in {NAMESPACE!r}")
        if group.endswith("knative.dev"):
            for rule, message in schema_problems(catalog, body):
                add(resource, rule, message)
        rules = KIND_RULES.get((group, resource.kind))
        if rules is not None:
            for rule, message in rules(body):
                add(resource, rule, message)
        if (group, resource.kind) == ("serving.knative.dev", "Service"):
            template_spec = ((body.get("spec") or {}).get("template") or {}).get("spec") or {}
            for rule, message in volume_problems(template_spec, serving_features(resource.origin)):
                add(resource, rule, message)
    for resource, rule, message in reference_problems(resources):
        add(resource, rule, message)
    return problems


def shown(path: Path) -> str:
    """`path` relative to the working directory when it lies inside it, else absolute."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def load_target(path: Path) -> list[Resource]:
    return build(path) if path.is_dir() else load_documents(path)


def default_targets() -> list[Path]:
    overlays = sorted(
        p for p in (ROOT / "knative" / "overlays").glob("*") if (p / "kustomization.yaml").is_file()
    )
    return [ROOT / "knative" / "base", *overlays]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    targets = [Path(a) for a in args] or default_targets()
    crds = Path(os.environ.get("VICTOR_KNATIVE_CRDS", DEFAULT_CRDS))
    if not crds.is_dir():
        print(f"validate: Knative CRDs not found at {crds}; set VICTOR_KNATIVE_CRDS", file=sys.stderr)
        return 1
    catalog = SchemaCatalog(crds)
    errors: list[str] = []
    checked = 0
    for target in targets:
        build_name = shown(target)
        try:
            resources = load_target(target)
        except (KustomizeError, OSError) as exc:
            errors.append(f"{build_name}: build: {exc}")
            continue
        checked += len(resources)
        errors.extend(p.line() for p in validate_resources(resources, catalog, build_name))
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        print(f"validate: {len(errors)} problem(s) in {len(targets)} build(s)", file=sys.stderr)
        return 1
    print(f"validate: {checked} objects in {len(targets)} build(s) are valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
