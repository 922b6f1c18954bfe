"""The alert rules and the Prometheus config, checked by the real promtool.

`config/prometheus/alerts.test.yml` holds a unit test per alert: each fires on its bad case
and stays silent on healthy traffic, start-up included. promtool comes from Debian's
prometheus package (.ci/run installs it); without it these tests are skipped, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS = Path(__file__).parents[2] / "config" / "prometheus"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_prometheus_config_and_its_rule_file_are_valid_where_they_lie() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_every_alert_fires_on_its_bad_case_and_is_silent_on_healthy_traffic() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("SUCCESS")


def test_the_unit_tests_cover_every_alert_both_ways() -> None:
    import yaml

    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    firing = {t["alertname"] for t in tests[0]["alert_rule_test"] if t.get("exp_alerts")}
    silent = {t["alertname"] for t in tests[1]["alert_rule_test"] if not t.get("exp_alerts")}
    assert firing == silent == alerts


def test_a_rule_that_fires_on_healthy_traffic_fails_the_unit_tests(tmp_path: Path) -> None:
    """The tests can fail: the old tool-failure rule, which counted cached results, is caught."""
    broken = (PROMETHEUS / "alerts.yml").read_text().replace('outcome!~"ok|cached"', 'outcome!="ok"')
    assert broken != (PROMETHEUS / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(PROMETHEUS / "alerts.test.yml", tmp_path / "alerts.test.yml")
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "alertname: VictorToolFailures, time: 29m" in result.stdout + result.stderr
