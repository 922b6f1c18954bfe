"""The knative/ manifests: what they declare, and that `just validate` rejects every broken rule."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import FUNCTION_NAMES
from eventing.broker.triggers import SubscriberDirectory, load_manifests
from eventing.schemas import chat, embeddings, health, tools
from scripts.kustomize import KustomizeError, Resource, build, strategic_merge
from tests.support.manifests import (
    KNATIVE,
    ROOT,
    container,
    copy_knative,
    edit_object,
    template_annotations,
    validate,
)

OVERLAYS = ("staging", "production")
# ARCHITECTURE.md's event table: each type and the function a Trigger delivers it to.
ROUTES = {
    chat.CHAT_REQUESTED: "chat",
    tools.TOOLS_REQUESTED: "tools",
    tools.TOOLS_COMPLETED: "chat",
    embeddings.EMBEDDINGS_REQUESTED: "embeddings",
    embeddings.INDEX_REQUESTED: "embeddings",
    embeddings.SEARCH_REQUESTED: "embeddings",
    health.PING: "health",
}


def objects(resources: list[Resource], kind: str) -> dict[str, dict[str, Any]]:
    return {r.name: r.body for r in resources if r.kind == kind}


@pytest.fixture(scope="module", params=("base", *OVERLAYS))
def built(request: pytest.FixtureRequest) -> list[Resource]:
    path = KNATIVE / "base" if request.param == "base" else KNATIVE / "overlays" / request.param
    return build(path)


# --- the real manifests ----------------------------------------------------------------


def test_every_build_passes_validation() -> None:
    status, errors, out = validate()
    assert errors == []
    assert status == 0
    # base, the two environments, production on a Kafka Broker, and the monitoring overlay.
    assert out.startswith("validate: ") and "in 5 build(s) are valid" in out


def test_each_function_is_one_knative_service_running_its_own_command(built: list[Resource]) -> None:
    services = objects(built, "Service")
    for name in FUNCTION_NAMES:
        service = services[f"victor-{name}"]
        assert service["apiVersion"] == "serving.knative.dev/v1"
        assert service["metadata"]["namespace"] == "victor"
        main = container(service)
        assert main["command"] == ["victor", "serve", name]
        assert main["image"].startswith("ghcr.io/victor-functions/victor")
        assert main["ports"] == [{"name": "http1", "containerPort": 8080}]
        assert main["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert main["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert main["startupProbe"]["httpGet"]["path"] == "/health/startup"
        assert main["envFrom"] == [{"configMapRef": {"name": "victor-config"}}]
        assert set(main["resources"]) == {"requests", "limits"}
        assert template_annotations(service)["autoscaling.knative.dev/min-scale"] in ("0", "1")


def test_containers_run_unprivileged_on_a_read_only_root(built: list[Resource]) -> None:
    for service in objects(built, "Service").values():
        main = container(service)
        assert main["securityContext"] == {
            **main["securityContext"],
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }


def test_secrets_are_referenced_never_stored(built: list[Resource]) -> None:
    assert not [r for r in built if r.kind == "Secret"]
    for service in (objects(built, "Service")[f"victor-{n}"] for n in FUNCTION_NAMES):
        for variable in container(service).get("env", []):
            assert "value" not in variable, variable["name"]
            assert variable["valueFrom"]["secretKeyRef"]["name"] == "victor-secrets"
    config = objects(built, "ConfigMap")["victor-config"]["data"]
    assert not {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DATABASE_URL", "VICTOR_API_KEY"} & set(config)


def test_only_chat_and_health_have_public_routes(built: list[Resource]) -> None:
    services = objects(built, "Service")
    visibility = {
        name: services[f"victor-{name}"]["metadata"]["labels"].get("networking.knative.dev/visibility")
        for name in FUNCTION_NAMES
    }
    assert visibility == {
        "chat": None,
        "tools": "cluster-local",
        "embeddings": "cluster-local",
        "health": None,
    }


def test_one_trigger_per_event_type_routes_to_its_function(built: list[Resource]) -> None:
    triggers = objects(built, "Trigger").values()
    routes = {t["spec"]["filter"]["attributes"]["type"]: t["spec"]["subscriber"]["ref"] for t in triggers}
    assert len(routes) == len(list(triggers))
    assert routes == {
        event_type: {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": f"victor-{name}"}
        for event_type, name in ROUTES.items()
    }
    assert {t["spec"]["broker"] for t in triggers} == {"default"}


def test_broker_retries_with_backoff_then_dead_letters(built: list[Resource]) -> None:
    delivery = objects(built, "Broker")["default"]["spec"]["delivery"]
    assert delivery["retry"] == 6
    assert delivery["backoffPolicy"] == "exponential"
    assert delivery["backoffDelay"] == "PT1S"  # 63 s of retries: a store away for a minute loses nothing
    assert delivery["deadLetterSink"]["ref"]["name"] in objects(built, "Service")
    ping = objects(built, "PingSource")["victor-health-ping"]["spec"]
    assert ping["schedule"] == "* * * * *"
    assert ping["sink"]["ref"] == {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "name": "default",
    }


def test_the_local_broker_loads_the_same_triggers_and_delivery() -> None:
    """`victor dev` and compose run the broker on knative/base: it must read what the cluster reads."""
    names = [f"victor-{name}" for name in FUNCTION_NAMES] + ["victor-dead-letters"]
    directory = SubscriberDirectory({name: f"http://{name}.test" for name in names})
    manifests = load_manifests(KNATIVE / "base", directory, namespace="victor", broker="default")
    assert {t.subscriber_url for t in manifests.triggers} == {
        f"http://victor-{n}.test" for n in FUNCTION_NAMES
    }
    assert len(manifests.triggers) == len(ROUTES)
    [broker] = manifests.brokers
    delivery = broker.delivery
    assert delivery is not None
    assert (delivery.retry, delivery.backoff_policy, delivery.backoff_delay) == (6, "exponential", 1.0)
    assert delivery.dead_letter_url == "http://victor-dead-letters.test"


def test_overlays_differ_where_environments_should() -> None:
    staging = objects(build(KNATIVE / "overlays" / "staging"), "Service")
    production = objects(build(KNATIVE / "overlays" / "production"), "Service")
    for name in FUNCTION_NAMES:
        service = f"victor-{name}"
        # The embeddings Service runs the embeddings image (the model inside, no hub at run time).
        image = "ghcr.io/victor-functions/victor" + ("-embeddings" if name == "embeddings" else "")
        assert container(staging[service])["image"] == f"{image}:staging"
        assert container(production[service])["image"] == f"{image}:0.1.0"
        low = int(template_annotations(staging[service])["autoscaling.knative.dev/max-scale"])
        high = int(template_annotations(production[service])["autoscaling.knative.dev/max-scale"])
        assert low < high
    assert template_annotations(production["victor-chat"])["autoscaling.knative.dev/min-scale"] == "1"
    assert template_annotations(staging["victor-chat"])["autoscaling.knative.dev/min-scale"] == "0"
    embeddings = container(production["victor-embeddings"])
    assert embeddings["resources"]["limits"] == {"cpu": "4", "memory": "4Gi"}
    # The JSON patch appended to the env list; the base entries are still there.
    names = [v["name"] for v in embeddings["env"]]
    assert names[0] == "DATABASE_URL" and names[-2:] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]


# --- broken copies: each rule rejected with a one-line error -----------------------------

Change = Callable[[dict[str, Any]], None]


def set_annotation(key: str, value: str) -> Change:
    return lambda service: template_annotations(service).__setitem__(f"autoscaling.knative.dev/{key}", value)


def add_port(service: dict[str, Any]) -> None:
    container(service)["ports"].append({"name": "metrics", "containerPort": 9100})


def set_port(number: int) -> Change:
    return lambda service: container(service)["ports"][0].__setitem__("containerPort", number)


def add_env(name: str) -> Change:
    return lambda service: container(service)["env"].append({"name": name, "value": "1"})


def set_filters(filters: list[Any]) -> Change:
    return lambda trigger: trigger["spec"].__setitem__("filters", filters)


SERVICE = ("services.yaml", "Service", "victor-chat")
TRIGGER = ("triggers.yaml", "Trigger", "victor-chat-requested")
BROKEN: list[tuple[str, tuple[str, str, str], Change, str]] = [
    (
        "unknown-field",
        SERVICE,
        lambda s: s["spec"]["template"]["spec"].__setitem__("containerConcurency", 4),
        "Service/victor-chat: schema: spec.template.spec: Additional properties are not allowed "
        "('containerConcurency' was unexpected)",
    ),
    (
        "wrong-type",
        TRIGGER,
        lambda t: t["spec"].__setitem__("broker", 5),
        "Trigger/victor-chat-requested: schema: spec.broker: 5 is not of type 'string'",
    ),
    (
        "two-ports",
        SERVICE,
        add_port,
        "Service/victor-chat: one-port: expected exactly one container port in the revision, found 2",
    ),
    (
        "reserved-port",
        SERVICE,
        set_port(9090),
        "Service/victor-chat: reserved-port: container chat port 9090 is reserved by Knative "
        "(8012, 8013, 8022, 9090, 9091, 8008)",
    ),
    ("reserved-port-8012", SERVICE, set_port(8012), "reserved-port: container chat port 8012 is reserved"),
    (
        "reserved-env-port",
        SERVICE,
        add_env("PORT"),
        "reserved-env: container chat sets PORT, which Knative reserves",
    ),
    ("reserved-env-k-service", SERVICE, add_env("K_SERVICE"), "reserved-env: container chat sets K_SERVICE"),
    (
        "two-dialects",
        TRIGGER,
        set_filters([{"exact": {"type": "a"}, "prefix": {"source": "b"}}]),
        "Trigger/victor-chat-requested: one-dialect: spec.filters[0] must have exactly one dialect, "
        "found 2 (exact, prefix)",
    ),
    (
        "nested-two-dialects",
        TRIGGER,
        set_filters(
            [{"all": [{"exact": {"type": "a"}}, {"suffix": {"type": "b"}, "not": {"exact": {"id": "c"}}}]}]
        ),
        "one-dialect: spec.filters[0].all[1] must have exactly one dialect, found 2 (suffix, not)",
    ),
    (
        "empty-any",
        TRIGGER,
        set_filters([{"any": []}]),
        "filters: spec.filters[0].any must contain at least one filter expression",
    ),
    (
        "filters-attribute-name",
        TRIGGER,
        set_filters([{"exact": {"conversation_id": "a"}}]),
        "attribute-name: spec.filters[0].exact attribute 'conversation_id' must match ^[a-z][a-z0-9]*$",
    ),
    (
        "filter-attribute-name",
        TRIGGER,
        lambda t: t["spec"]["filter"]["attributes"].__setitem__("Source", "x"),
        "attribute-name: spec.filter.attributes attribute 'Source' must match ^[a-z][a-z0-9]*$",
    ),
    (
        "min-scale-negative",
        SERVICE,
        set_annotation("min-scale", "-1"),
        "autoscaling.knative.dev/min-scale=-1 must be >= 0",
    ),
    (
        "max-scale-text",
        SERVICE,
        set_annotation("max-scale", "ten"),
        "autoscaling.knative.dev/max-scale='ten' is not an integer",
    ),
    (
        "min-above-max",
        SERVICE,
        set_annotation("min-scale", "20"),
        "autoscaling.knative.dev/min-scale=20 is greater than max-scale=10",
    ),
    (
        "target-too-small",
        SERVICE,
        set_annotation("target", "0.001"),
        "autoscaling.knative.dev/target=0.001 must be >= 0.01",
    ),
    (
        "utilization-over-100",
        SERVICE,
        set_annotation("target-utilization-percentage", "150"),
        "autoscaling.knative.dev/target-utilization-percentage=150 must be between 1 and 100",
    ),
    (
        "metric-unknown",
        SERVICE,
        set_annotation("metric", "latency"),
        "autoscaling.knative.dev/metric='latency' must be concurrency, rps, cpu or memory",
    ),
    (
        "metric-class-mismatch",
        SERVICE,
        set_annotation("metric", "cpu"),
        "autoscaling.knative.dev/metric=cpu does not work with class "
        "kpa.autoscaling.knative.dev (concurrency or rps)",
    ),
    (
        "window-too-short",
        SERVICE,
        set_annotation("window", "5s"),
        "autoscaling.knative.dev/window=5s must be between 6s and 3600s",
    ),
    (
        "window-too-long",
        SERVICE,
        set_annotation("window", "2h"),
        "autoscaling.knative.dev/window=2h must be between 6s and 3600s",
    ),
    (
        "window-not-duration",
        SERVICE,
        set_annotation("window", "60"),
        "autoscaling.knative.dev/window='60' is not a duration such as 60s or 10m",
    ),
    (
        "initial-scale-zero",
        SERVICE,
        set_annotation("initial-scale", "0"),
        "autoscaling.knative.dev/initial-scale=0 needs allow-zero-initial-scale in config-autoscaler",
    ),
    (
        "retention-negative",
        SERVICE,
        set_annotation("scale-to-zero-pod-retention-period", "-1m"),
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period='-1m' is not a duration",
    ),
    (
        "retention-too-long",
        SERVICE,
        set_annotation("scale-to-zero-pod-retention-period", "2h"),
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period=2h must be between 0s and 3600s",
    ),
    (
        "misspelled-annotation",
        SERVICE,
        set_annotation("min-scael", "1"),
        "autoscaling: autoscaling.knative.dev/min-scael is not a Knative autoscaling annotation",
    ),
    (
        "container-concurrency",
        SERVICE,
        lambda s: s["spec"]["template"]["spec"].__setitem__("containerConcurrency", 2000),
        "container-concurrency: containerConcurrency=2000 must be between 0 and 1000",
    ),
    (
        "dangling-subscriber",
        TRIGGER,
        lambda t: t["spec"]["subscriber"]["ref"].__setitem__("name", "victor-chatt"),
        "dangling-ref: spec.subscriber.ref names Service/victor-chatt, which is not in the build",
    ),
    (
        "configmap-not-string",
        ("configmap.yaml", "ConfigMap", "victor-config"),
        lambda c: c["data"].__setitem__("VICTOR_DEBUG", False),
        "ConfigMap/victor-config: configmap-string: data.VICTOR_DEBUG is bool False; quote it as a string",
    ),
    (
        "backoff-delay",
        ("broker.yaml", "Broker", "default"),
        lambda b: b["spec"]["delivery"].__setitem__("backoffDelay", "500ms"),
        "Broker/default: delivery: spec.delivery.backoffDelay='500ms' is not an ISO 8601 duration",
    ),
]


@pytest.mark.parametrize(("case", "where", "change", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_copy_is_rejected_with_one_line_naming_file_object_and_rule(
    tmp_path: Path, case: str, where: tuple[str, str, str], change: Change, expected: str
) -> None:
    knative = copy_knative(tmp_path)
    file, kind, name = where
    edit_object(knative / "base" / file, kind, name, change)
    status, errors, _ = validate(knative / "base")
    assert status == 1
    matching = [line for line in errors[:-1] if expected in line]
    assert len(matching) == 1, errors
    assert matching[0].startswith(f"{knative / 'base' / file} ({knative / 'base'}): {kind}/{name}: ")
    assert errors[-1].startswith("validate: ") and "problem(s) in 1 build(s)" in errors[-1]


def test_missing_crd_schemas_are_an_error_not_a_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_KNATIVE_CRDS", str(tmp_path / "nowhere"))
    status, errors, out = validate()
    assert (status, out) == (1, "")
    assert errors == [f"validate: Knative CRDs not found at {tmp_path / 'nowhere'}; set VICTOR_KNATIVE_CRDS"]


def test_a_secret_with_values_is_rejected(tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: victor-secrets, namespace: victor}\n"
        "stringData: {ANTHROPIC_API_KEY: sk-test}\n"
    )
    status, errors, _ = validate(secret)
    assert status == 1
    assert errors[0] == (
        f"{secret}: Secret/victor-secrets: no-secret-values: "
        "Secret values never go in the repository; create the Secret out of band"
    )
    assert "sk-test" not in "\n".join(errors)


def test_a_patch_for_a_missing_object_fails_the_overlay_build(tmp_path: Path) -> None:
    knative = copy_knative(tmp_path)
    patch = knative / "overlays" / "staging" / "scaling.yaml"
    patch.write_text(patch.read_text().replace("name: victor-tools", "name: victor-toolz"))
    status, errors, _ = validate(knative / "overlays" / "staging")
    assert status == 1
    assert len(errors) == 2
    assert errors[0].endswith("scaling.yaml: patch target Service/victor-toolz is not among the resources")


def test_kustomization_fields_outside_the_supported_subset_are_refused(tmp_path: Path) -> None:
    knative = copy_knative(tmp_path)
    kustomization = knative / "overlays" / "production" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "configMapGenerator:\n  - name: extra\n")
    with pytest.raises(KustomizeError, match=r"unsupported field\(s\) configMapGenerator"):
        build(knative / "overlays" / "production")


def test_just_validate_passes_on_the_repository_and_fails_on_a_broken_copy(tmp_path: Path) -> None:
    """`just validate` end to end: the validator, then hadolint, from a copy of the repository."""
    for item in ("Justfile", "Dockerfile", "scripts"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / item)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    knative = copy_knative(tmp_path)
    # Nothing beside the copy: the CRDs come from its own knative/crds, as in a fresh clone.
    env = {k: v for k, v in os.environ.items() if k != "VICTOR_KNATIVE_CRDS"}
    just = [str(ROOT / ".venv" / "bin" / "just"), "validate"]

    clean = subprocess.run(just, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert "are valid" in clean.stdout

    edit_object(knative / "base" / "services.yaml", "Service", "victor-tools", set_port(8022))
    broken = subprocess.run(just, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0
    lines = [line for line in broken.stderr.splitlines() if "reserved-port" in line]
    # The base, both environments and production on Kafka each carry the broken Service.
    assert len(lines) == 4
    assert all(
        line.startswith("knative/base/services.yaml (")
        and "Service/victor-tools: reserved-port: container tools port 8022" in line
        for line in lines
    )


# --- the kustomize subset ----------------------------------------------------------------


KUSTOMIZATIONS = ("base", "overlays/staging", "overlays/production", "overlays/kafka", "overlays/monitoring")


def object_key(body: dict[str, Any]) -> tuple[str, str, str, str]:
    metadata = body["metadata"]
    return (body["apiVersion"], body["kind"], metadata.get("namespace", ""), metadata["name"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_our_kustomize_builds_the_objects_kubectl_kustomize_builds(kustomization: str) -> None:
    """`just validate` checks what scripts/kustomize.py builds; it must be what a cluster gets
    from `kubectl apply -k`, object by object."""
    path = KNATIVE / kustomization
    kubectl = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=True
    )
    theirs = {object_key(body): body for body in yaml.safe_load_all(kubectl.stdout) if body}
    ours = {object_key(resource.body): resource.body for resource in build(path)}
    assert sorted(ours) == sorted(theirs)
    for key, body in ours.items():
        assert body == theirs[key], key


def test_strategic_merge_merges_maps_replaces_lists_and_deletes_nulls() -> None:
    base = {"a": {"keep": 1, "change": 2, "drop": 3}, "items": [1, 2]}
    patch = {"a": {"change": 20, "drop": None, "new": 4}, "items": [9]}
    assert strategic_merge(base, patch) == {"a": {"keep": 1, "change": 20, "new": 4}, "items": [9]}
    assert base == {"a": {"keep": 1, "change": 2, "drop": 3}, "items": [1, 2]}


def test_json_patch_operations_and_image_rewrites(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "metadata": {"name": "app"},
                "spec": {
                    "template": {
                        "spec": {"containers": [{"image": "localhost:5000/app", "env": [{"name": "A"}]}]}
                    }
                },
            }
        )
    )
    (tmp_path / "ops.yaml").write_text(
        yaml.safe_dump(
            [
                {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "B"}},
                {"op": "replace", "path": "/spec/template/spec/containers/0/env/0", "value": {"name": "Z"}},
                {"op": "remove", "path": "/metadata/name~1x"},
            ]
        )
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [app.yaml]\nnamespace: victor\n"
        "images:\n  - name: localhost:5000/app\n    newTag: v2\n"
        "patches:\n  - path: ops.yaml\n    target: {kind: Service, name: app}\n"
    )
    with pytest.raises(
        KustomizeError, match=r"ops.yaml: path '/metadata/name~1x' does not exist in the target"
    ):
        build(tmp_path)
    (tmp_path / "ops.yaml").write_text((tmp_path / "ops.yaml").read_text().replace("name~1x", "name"))
    [service] = build(tmp_path)
    assert service.body["metadata"] == {"namespace": "victor"}
    main = service.body["spec"]["template"]["spec"]["containers"][0]
    assert main == {"image": "localhost:5000/app:v2", "env": [{"name": "Z"}, {"name": "B"}]}


def test_metrics_are_scrapable_on_a_cluster_and_every_image_is_pinned() -> None:
    """Prometheus annotations on every function, a PodMonitor overlay, and the NetworkPolicy lets
    Prometheus (metrics port only) and the ingress gateway through; no image floats."""
    base = build(KNATIVE / "base")
    for name, service in objects(base, "Service").items():
        if not name.startswith("victor-"):
            continue
        annotations = service["spec"]["template"]["metadata"]["annotations"]
        assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", "8080"), (
            name
        )
    for resource in base:
        if resource.kind == "Service" and resource.body["apiVersion"].startswith("serving.knative.dev"):
            for container in resource.body["spec"]["template"]["spec"]["containers"]:
                image = container["image"]
                pinned_by_overlays = (
                    "ghcr.io/victor-functions/victor",
                    "ghcr.io/victor-functions/victor-embeddings",
                )
                assert "@sha256:" in image or image in pinned_by_overlays, image
    [policy] = objects(base, "NetworkPolicy").values()
    sources = [rule for rule in policy["spec"]["ingress"]]
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in sources
        for peer in rule["from"]
        if "namespaceSelector" in peer
    }
    assert {
        "knative-serving",
        "knative-eventing",
        "kourier-system",
        "istio-system",
        "monitoring",
    } <= namespaces
    monitoring = next(rule for rule in sources if "ports" in rule)
    assert monitoring["ports"] == [{"protocol": "TCP", "port": 8080}]
    [monitor] = objects(build(KNATIVE / "overlays" / "monitoring"), "PodMonitor").values()
    assert monitor["metadata"]["namespace"] == "victor"
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/part-of": "victor"}
    assert monitor["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


def test_the_shared_workspace_volume_needs_the_feature_flags_the_cluster_patch_enables(
    tmp_path: Path,
) -> None:
    """Knative's webhook refuses PVC volumes unless config-features allows them: so does validate."""
    base = build(KNATIVE / "base")
    [claim] = objects(base, "PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    services = objects(base, "Service")
    mounts = {
        name: {m["mountPath"]: m.get("readOnly", False) for m in container(services[name])["volumeMounts"]}
        for name in ("victor-tools", "victor-embeddings")
    }
    assert mounts["victor-tools"]["/workspace"] is False
    assert mounts["victor-embeddings"]["/workspace"] is True
    assert "/workspace" not in mounts.get("victor-chat", {})
    config = objects(base, "ConfigMap")["victor-config"]["data"]
    assert (config["WORKSPACE_DIR"], config["LANCEDB_URI"]) == ("/workspace", "/var/lib/victor/lancedb")

    knative = copy_knative(tmp_path)
    (knative / "cluster" / "config-features.yaml").unlink()
    status, errors, _ = validate(knative / "base")
    assert status == 1
    flagged = sorted(
        line.split(": ", 1)[1].split(": feature-flag")[0] for line in errors if "feature-flag" in line
    )
    assert flagged == [
        "Service/victor-embeddings",
        "Service/victor-embeddings",
        "Service/victor-tools",
        "Service/victor-tools",
    ]


def test_the_kafka_overlay_is_production_on_a_kafka_broker() -> None:
    kafka = build(KNATIVE / "overlays" / "kafka")
    production = build(KNATIVE / "overlays" / "production")
    [broker] = objects(kafka, "Broker").values()
    [original] = objects(production, "Broker").values()
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "Kafka"
    assert broker["spec"]["config"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "kafka-broker-config",
        "namespace": "knative-eventing",
    }
    assert broker["spec"]["delivery"] == original["spec"]["delivery"]  # retries and dead letters kept
    assert objects(kafka, "Service") == objects(production, "Service")
