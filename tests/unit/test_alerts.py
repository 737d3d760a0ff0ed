"""The Prometheus alert rules (deploy/prometheus/alerts.yml), checked by promtool: the rules
parse, their unit tests (alerts.test.yml) feed series and see each alert fire, and the
Prometheus configuration as compose mounts it loads. Every alert has a runbook section in
docs/operations.md and alerts only on metrics that cofi exports.

promtool comes from Debian's `prometheus` package: `infra/promtool.sh install` (`make test`
runs it)."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.metrics import Metrics
from shared.observability.group_lag import GroupLagGauges

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
# Prometheus' own series.
PROMETHEUS_SERIES = {"up"}
# The default process collector every service registers (shared/metrics.py).
PROCESS_SERIES = {"process_cpu_seconds_total", "process_resident_memory_bytes"}


def promtool() -> str:
    found = (
        shutil.which("promtool")
        or subprocess.run(
            [str(ROOT / "infra" / "promtool.sh"), "path"], capture_output=True, text=True
        ).stdout.strip()
    )
    if not found:
        pytest.fail("promtool is missing: run infra/promtool.sh install (make test does)")
    return found


def run_promtool(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    output = run_promtool("check", "rules", str(RULES))
    assert "SUCCESS" in output


def test_promtool_unit_tests_see_every_alert_fire() -> None:
    output = run_promtool("test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in output and "FAILED" not in output
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    names = {rule["alert"] for rule in alerts()}
    assert names <= fired, f"alerts no unit test expects to fire: {sorted(names - fired)}"


def test_promtool_loads_the_prometheus_configuration_as_compose_mounts_it(
    tmp_path: Path,
) -> None:
    prometheus = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]
    for volume in prometheus["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            copy = tmp_path / target.lstrip("/")
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, copy)
    config = tmp_path / "etc" / "prometheus" / "prometheus.yml"
    output = run_promtool("check", "config", str(config))
    assert "SUCCESS" in output and "rule files found" in output


def test_every_alert_links_its_runbook_section_and_the_section_exists() -> None:
    operations = OPERATIONS.read_text()
    base = yaml.safe_load(PROMETHEUS.read_text())["global"]["external_labels"]["runbook_base"]
    assert base.startswith("https://"), "runbook_base: where the operators serve docs/"
    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        path, anchor = url.split("#")
        assert path == "{{ $externalLabels.runbook_base }}/operations.md", rule["alert"]
        assert f'<a id="{anchor}"></a>' in operations, f"{rule['alert']}: no section {anchor}"
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]


def test_every_scrape_job_pages_when_it_is_gone() -> None:
    jobs = {c["job_name"] for c in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}
    watched = set(re.findall(r'absent\(up\{job="([^"]+)"\} == 1\)', RULES.read_text()))
    assert jobs - {"prometheus"} <= watched, f"no absent(up) alert for {jobs - watched}"


def test_amtool_checks_the_alertmanager_configuration() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is missing: run infra/promtool.sh install (make test does)")
    done = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    routes = yaml.safe_load(ALERTMANAGER.read_text())["route"]
    assert any('severity="page"' in m for r in routes["routes"] for m in r["matchers"])


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def known_series() -> set[str]:
    """What an expression may read: cofi's metrics (every sample name), the recording rules,
    Prometheus' own series, and the metric alerted on before the code exports it."""
    exported = set()
    registry = Metrics().registry
    GroupLagGauges(registry)  # the tracker's export of the stage groups' committed offsets
    for family in registry.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
        if family.type == "histogram":  # a labelled one has no samples before its first use
            exported |= {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum")}
    exported |= {f"{name}_count" for name in exported} | {f"{name}_total" for name in exported}
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    return exported | recorded | PROMETHEUS_SERIES | PROCESS_SERIES


def series_in(expr: str) -> set[str]:
    """The cofi metric and recording-rule names an expression reads."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
    return set(
        re.findall(r"(?<![\w:])(cofi[_:][a-z0-9_:]+|up|process_[a-z_]+)\b(?=\s*[{\[)])", expr)
    )


def test_alerts_use_only_metrics_that_cofi_exports() -> None:
    known = known_series()
    for rule in rules():
        unknown = series_in(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule['record']}: {sorted(unknown)}"
