"""scripts/deploy.sh against a stand-in `kubectl` that records every call and can fail a chosen step.

The stand-in answers what a cluster would (the serving revisions, Service URLs); the
backup is the real `victor backup` against the test PostgreSQL, and the smoke test is the
real scripts/smoke_test.sh against a real health function, so a deploy that passes has
really been checked and a rollback is triggered by a real failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from common.settings import Settings
from functions.health.app import create as create_health
from tests.support.servers import running

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "scripts" / "deploy.sh"
REVISIONS = {
    "victor-chat": "victor-chat-00003",
    "victor-tools": "victor-tools-00002",
    "victor-embeddings": "victor-embeddings-00002",
    "victor-health": "victor-health-00004",
    "victor-dead-letters": "",  # never became ready: nothing to roll back to
}
STAND_IN = """\
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if os.environ.get("FAKE_KUBECTL_FAIL") and " ".join(args).startswith(os.environ["FAKE_KUBECTL_FAIL"]):
    print(f"error: {args[0]} failed (stand-in)", file=sys.stderr)
    sys.exit(1)
if args[:2] == ["get", "ksvc"] and len(args) > 2 and args[2] == "-n":
    for name, revision in json.loads(os.environ["FAKE_KUBECTL_REVISIONS"]).items():
        print(f"{name} {revision}")
elif args[:2] == ["get", "ksvc"]:
    print(f"http://{args[2]}.victor.example.com", end="")
elif args[:2] == ["get", "broker"]:
    print("http://broker-ingress.knative-eventing.svc.cluster.local/victor/default", end="")
elif args[0] == "apply":
    with open(args[args.index("-f") + 1]) as manifests:
        print(f"{sum(1 for line in manifests if line.startswith('kind:'))} objects configured")
"""


def stand_in_kubectl(tmp_path: Path) -> Path:
    path = tmp_path / "kubectl"
    path.write_text(f"#!{sys.executable}\n{STAND_IN}")
    path.chmod(0o755)
    return path


async def deploy(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str, list[list[str]]]:
    log = tmp_path / "kubectl.log"
    log.write_text("")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "DATABASE_URL"))}
    environ.update(
        KUBECTL=str(stand_in_kubectl(tmp_path)),
        FAKE_KUBECTL_LOG=str(log),
        FAKE_KUBECTL_REVISIONS=json.dumps(REVISIONS),
        PYTHON=sys.executable,
        VICTOR=str(Path(sys.executable).parent / "victor"),
        VICTOR_BACKUP_DIR=str(tmp_path / "backups"),
        VICTOR_SMOKE_TIMEOUT="3",
        **env,
    )
    process = await asyncio.create_subprocess_exec(
        "sh", str(DEPLOY), *args, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return process.returncode, out.decode(), err.decode(), calls


def verbs(calls: list[list[str]]) -> list[str]:
    return [" ".join(call[:2]) for call in calls]


async def test_a_dry_run_prints_the_plan_and_the_pinned_manifests_and_calls_nothing(tmp_path: Path) -> None:
    code, out, err, calls = await deploy(tmp_path, "production", "--dry-run", "--version", "1.4.2")
    assert (code, err, calls) == (0, "", [])
    plan, _, manifests = out.partition("deploy: dry run: nothing was changed; the manifests follow\n")
    victor_command = Path(sys.executable).parent / "victor"
    assert plan.splitlines() == [
        "deploy: step 1/7 render: knative/overlays/production with ghcr.io/victor-functions/victor and "
        "ghcr.io/victor-functions/victor-embeddings at 1.4.2",
        f"deploy: step 2/7 backup: would run '{victor_command} backup "
        f"{tmp_path / 'backups'}/<time>-before-deploy'",
        "deploy: step 3/7 record: would read the serving revision of every Knative Service "
        "in namespace victor",
        "deploy: step 4/7 migrate: would run the Job victor-migrate and wait up to 300s for it",
        f"deploy: step 5/7 apply: would run '{tmp_path / 'kubectl'} apply -n victor -f <these manifests>'",
        "deploy: step 6/7 wait: would wait up to 300s for every Knative Service to be Ready",
        "deploy: step 7/7 smoke: would run scripts/smoke_test.sh against the deployed URLs",
    ]
    objects = [o for o in yaml.safe_load_all(manifests) if o]
    images = [
        c["image"]
        for o in objects
        if o["kind"] == "Service" and o["apiVersion"].startswith("serving.knative.dev")
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    victor = [image for image in images if image.startswith("ghcr.io/victor-functions/victor")]
    assert set(victor) == {
        "ghcr.io/victor-functions/victor:1.4.2",
        "ghcr.io/victor-functions/victor-embeddings:1.4.2",
    }
    assert {o["metadata"]["namespace"] for o in objects if o["kind"] != "Namespace"} == {"victor"}


async def test_bad_arguments_are_refused_with_one_line(tmp_path: Path) -> None:
    assert (await deploy(tmp_path, "qa"))[:3] == (
        2,
        "",
        "usage: sh scripts/deploy.sh staging|production [--dry-run] [--version V]\n",
    )
    code, out, err, calls = await deploy(tmp_path, "staging", "--version", "1.0;rm -rf /")
    assert (code, out, calls) == (2, "", [])
    assert err == (
        "deploy: --version must be an image tag (letters, digits, '_', '.', '-'), got '1.0;rm -rf /'\n"
    )


async def healthy_deploy(
    make_settings: Callable[..., Settings], tmp_path: Path, **env: str
) -> tuple[int, str, str, list[list[str]]]:
    settings = make_settings()
    async with running(create_health(settings)) as health_url:
        return await deploy(
            tmp_path,
            "production",
            "--version",
            "2.0.0",
            DATABASE_URL=settings.database_dsn or "",
            LANCEDB_URI=str(tmp_path / "lancedb"),
            VICTOR_HEALTH_URL=env.pop("VICTOR_HEALTH_URL", health_url),
            VICTOR_SMOKE_SKIP="broker,chat,tools,embeddings",
            **env,
        )


async def test_production_backs_up_applies_waits_and_smoke_tests(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    code, out, err, calls = await healthy_deploy(make_settings, tmp_path)
    assert (code, err) == (0, ""), out + err
    assert out.splitlines()[-1] == "deploy: production is deployed at 2.0.0 and passed the smoke test"
    assert verbs(calls) == [
        "get ksvc",
        "delete job",
        "apply -n",
        "wait job/victor-migrate",
        "apply -n",
        "wait ksvc",
        "get ksvc",  # URLs not given in VICTOR_*_URL
        "get ksvc",
        "get ksvc",
        "get broker",
    ]
    # The migration Job alone first (by its label), then everything.
    assert calls[2][-2:] == ["-l", "app.kubernetes.io/component=migrate"]
    assert calls[3] == [
        "wait",
        "job/victor-migrate",
        "-n",
        "victor",
        "--for=condition=complete",
        "--timeout=300s",
    ]
    assert calls[5] == ["wait", "ksvc", "--all", "-n", "victor", "--for=condition=Ready", "--timeout=300s"]
    backups = list((tmp_path / "backups").iterdir())
    assert len(backups) == 1 and backups[0].name.endswith("-before-deploy")
    assert (backups[0] / "manifest.json").is_file()


async def test_a_failed_wait_routes_traffic_back_to_the_previous_revisions(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    code, _out, err, calls = await healthy_deploy(make_settings, tmp_path, FAKE_KUBECTL_FAIL="wait ksvc")
    assert code == 1
    patches = [call for call in calls if call[0] == "patch"]
    assert [(p[2], json.loads(p[p.index("-p") + 1])) for p in patches] == [
        (name, {"spec": {"traffic": [{"revisionName": revision, "percent": 100}]}})
        for name, revision in REVISIONS.items()
        if revision
    ]
    assert err.splitlines() == [
        "error: wait failed (stand-in)",
        "deploy: FAILED at wait; routing traffic back to the previous revisions",
        "deploy: rolled back victor-chat to victor-chat-00003",
        "deploy: rolled back victor-tools to victor-tools-00002",
        "deploy: rolled back victor-embeddings to victor-embeddings-00002",
        "deploy: rolled back victor-health to victor-health-00004",
    ]


async def test_a_failed_smoke_test_rolls_back(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    code, _out, err, calls = await healthy_deploy(
        make_settings, tmp_path, VICTOR_HEALTH_URL="http://127.0.0.1:9/nothing-listens"
    )
    assert code == 1
    assert "smoke: FAILED health readiness" in err
    assert "deploy: FAILED at smoke; routing traffic back to the previous revisions" in err
    assert len([call for call in calls if call[0] == "patch"]) == 4


async def test_a_failed_migration_changes_no_service(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    code, _out, err, calls = await deploy(
        tmp_path,
        "staging",
        FAKE_KUBECTL_FAIL="wait job/victor-migrate",
        DATABASE_URL=settings.database_dsn or "",
    )
    assert code == 1
    assert err.splitlines()[-1] == "deploy: FAILED at migrate: the Services were not changed"
    assert [call[0] for call in calls] == ["get", "delete", "apply", "wait"]  # no second apply, no patch


async def test_a_failed_backup_stops_production_before_anything_changes(tmp_path: Path) -> None:
    code, _out, err, calls = await deploy(
        tmp_path, "production", DATABASE_URL="postgresql://nobody@127.0.0.1:9/none"
    )
    assert (code, calls) == (1, [])
    assert err.splitlines()[-1] == "deploy: FAILED at backup: nothing was applied"
