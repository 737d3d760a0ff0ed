"""The Grafana metrics dashboard: generated, current, on the Prometheus data source that compose
provisions, reading only metrics cofi exports, and every query parses (promtool)."""

import json
from pathlib import Path

import yaml

from cli.grafana_metrics_dashboard import DATASOURCE, PATH, queries, render
from tests.unit.test_alerts import known_series, run_promtool, series_in

ROOT = Path(__file__).resolve().parents[2]
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"


def test_the_committed_metrics_dashboard_is_current() -> None:
    assert PATH.read_text() == render(), "stale: run python -m cli.grafana_metrics_dashboard"


def test_its_panels_read_the_provisioned_prometheus() -> None:
    (source,) = yaml.safe_load((DATASOURCES / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert {"type": source["type"], "uid": source["uid"]} == DATASOURCE
    dashboard = json.loads(PATH.read_text())
    assert PATH.parent.name == "dashboards"  # provisioned with the tables dashboard
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for wanted in ("lag per gpu host", "in flight", "latency", "dead letters", "tracker write",
                   "batch completion time", "slos"):  # fmt: skip
        assert wanted in titles, wanted


def _concrete(expr: str) -> str:
    """The query as Grafana sends it: its interval and variables filled in."""
    return expr.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$host", ".*")


def test_the_dashboard_shows_up_circuits_and_each_replicas_cpu_and_memory() -> None:
    dashboard = json.loads(PATH.read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for wanted in ("up{", "cofi_stage_circuit_open", "process_cpu_seconds_total",
                   "process_resident_memory_bytes"):  # fmt: skip
        assert wanted in exprs, wanted
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"job", "host"}
    assert all(f"${v}" in exprs for v in variables)


def test_every_query_reads_exported_metrics_and_parses(tmp_path: Path) -> None:
    known = known_series()
    exprs = queries()
    for expr in exprs:
        used = series_in(expr)
        assert used, expr
        assert not used - known, f"{expr}: {sorted(used - known)}"
    # promtool parses PromQL when it checks rules: every query as a recording rule.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": _concrete(e)}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(exprs)} rules found" in run_promtool("check", "rules", str(path))
