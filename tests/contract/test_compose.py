"""compose.yaml and .env.example, checked structurally (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import FUNCTION_NAMES

ROOT = Path(__file__).resolve().parents[2]
HOST_PORTS = {"broker": 8000, "chat": 8001, "tools": 8002, "embeddings": 8003, "health": 8004}
SETTINGS_MODULES = [
    ROOT / "common" / "settings.py",
    ROOT / "eventing" / "broker" / "settings.py",
    *sorted(ROOT.glob("functions/*/settings.py")),
]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def test_stores_have_healthchecks_and_volumes(compose: dict[str, Any]) -> None:
    for name, data_dir in (("redis", "/data"), ("postgres", "/var/lib/postgresql/data")):
        service = services(compose)[name]
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
        [volume] = service["volumes"]
        named, _, mount = volume.partition(":")
        assert mount == data_dir
        assert named in compose["volumes"]


@pytest.mark.parametrize("name", [*FUNCTION_NAMES, "broker"])
def test_functions_and_broker_wait_for_healthy_stores(compose: dict[str, Any], name: str) -> None:
    service = services(compose)[name]
    assert service["command"] == ["serve", name]
    # The embeddings function runs the embeddings image target; every other service the core.
    image, target = (
        ("victor-functions-embeddings", "embeddings")
        if name == "embeddings"
        else ("victor-functions", "core")
    )
    assert service["image"] == image + ":${VICTOR_VERSION:-0.1.0}"
    assert (service["build"]["context"], service["build"]["target"]) == (".", target)
    assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert service["ports"] == [f"127.0.0.1:{HOST_PORTS[name]}:8080"]  # loopback only
    assert service["env_file"] == [{"path": ".env", "required": False}]
    assert service["user"] == "1000:1000" and service["read_only"] is True
    environment = service["environment"]
    assert environment["REDIS_URL"] == "redis://redis:6379/0"
    assert environment["DATABASE_URL"].startswith("postgresql://victor:")
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-http://jaeger:4318}"
    for function in FUNCTION_NAMES:
        assert environment[f"VICTOR_{function.upper()}_URL"] == f"http://{function}:8080"


def test_the_broker_reads_the_repository_triggers_and_waits_for_healthy_functions(
    compose: dict[str, Any],
) -> None:
    broker = services(compose)["broker"]
    assert broker["volumes"] == ["./knative:/etc/victor/knative:ro"]
    assert broker["environment"]["VICTOR_TRIGGERS_PATH"] == "/etc/victor/knative/base"
    assert (ROOT / "knative" / "base" / "triggers.yaml").is_file()
    for function in FUNCTION_NAMES:
        assert broker["depends_on"][function] == {"condition": "service_healthy"}
    migrate = services(compose)["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["build"]["context"] == "."


def test_observability_profile(compose: dict[str, Any]) -> None:
    profiled = {name for name, s in services(compose).items() if "observability" in s.get("profiles", [])}
    assert profiled == {"prometheus", "grafana", "jaeger"}
    assert services(compose)["prometheus"]["ports"] == ["127.0.0.1:9091:9090"]
    assert services(compose)["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    assert set(services(compose)["jaeger"]["ports"]) == {"127.0.0.1:16686:16686", "127.0.0.1:4318:4318"}
    assert services(compose)["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    for name in ("prometheus", "grafana"):
        for volume in services(compose)[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_dir(), volume


def test_env_example_lists_every_setting_and_no_secret_value() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    read = {
        name
        for module in SETTINGS_MODULES
        for name in re.findall(r'env\.[a-z_]+\(\s*"([A-Z][A-Z0-9_]*)"', module.read_text())
    }
    read |= {f"VICTOR_{name.upper()}_URL" for name in FUNCTION_NAMES}
    assert sorted(read - listed) == []
    for secret in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "VICTOR_API_KEY", "DATABASE_URL"):
        assert re.search(rf"^{secret}=$", example, re.MULTILINE), secret


def test_the_workspace_is_its_own_directory_never_the_project_root(compose: dict[str, Any]) -> None:
    """The project root holds .env: mounted as the workspace, read_file .env would hand out the keys."""
    mounts = [
        volume
        for service in services(compose).values()
        for volume in service.get("volumes", [])
        if ":/workspace" in volume
    ]
    assert mounts == [
        "${VICTOR_WORKSPACE:-./workspace}:/workspace",
        "${VICTOR_WORKSPACE:-./workspace}:/workspace:ro",
    ]
    example = (ROOT / ".env.example").read_text()
    assert "\nVICTOR_WORKSPACE=./workspace\n" in example
