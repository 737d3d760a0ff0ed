"""Build the Grafana metrics dashboard (deploy/grafana/dashboards/cofi-metrics.json).

    python -m cli.grafana_metrics_dashboard            # rewrite the file
    python -m cli.grafana_metrics_dashboard --check    # exit 1 when the file is stale

The panels read Prometheus (the `cofi-prometheus` data source): lag per GPU host (the
recording rule of deploy/prometheus/alerts.yml), in-flight records, model request latency
percentiles, dead letters, tracker write latency, dead hosts, open batches, replicas up, open
circuits, and each replica's CPU and memory, with `job` and `host` variables. Metric names are
those of shared/metrics.py (tests/unit/test_grafana_metrics.py checks them, and that every
query parses).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PATH = (
    Path(__file__).resolve().parent.parent
    / "deploy"
    / "grafana"
    / "dashboards"
    / "cofi-metrics.json"
)
DATASOURCE = {"type": "prometheus", "uid": "cofi-prometheus"}
RATE = "$__rate_interval"
PERCENTILES = (0.5, 0.95, 0.99)

# (title, [(legend, PromQL)], unit, grid (x, y, w, h), kind)
Panel = tuple[str, list[tuple[str, str]], str, tuple[int, int, int, int], str]


def _quantiles(metric: str, by: str, selector: str = "") -> list[tuple[str, str]]:
    return [
        (
            f"p{round(q * 100)} {{{{{by}}}}}",
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{selector}[{RATE}])))",
        )
        for q in PERCENTILES
    ]


def _tracker_quantiles() -> list[tuple[str, str]]:
    return [
        (
            f"p{round(q * 100)}",
            f"histogram_quantile({q}, sum by (le) "
            f'(rate(cofi_tracker_write_seconds_bucket{{outcome="ok"}}[{RATE}])))',
        )
        for q in PERCENTILES
    ]


PANELS: tuple[Panel, ...] = (
    (
        "Consumer lag per GPU host (records)",
        [("{{host}}", "sum by (host) (cofi:gpu_host_lag:sum)")],
        "short",
        (0, 0, 12, 8),
        "timeseries",
    ),
    (
        "Consumer lag per topic (stages, tracker)",
        [
            ("{{topic}}", 'sum by (topic) (cofi_consumer_lag{job!="tracker"})'),
            ("tracker", 'sum(cofi_consumer_lag{job="tracker"})'),
        ],
        "short",
        (12, 0, 12, 8),
        "timeseries",
    ),
    (
        "In flight per stage and host",
        [("{{stage}} @ {{host}}", "sum by (stage, host) (cofi_in_flight)")],
        "short",
        (0, 8, 12, 8),
        "timeseries",
    ),
    (
        "Files finished per second, by stage and outcome",
        [
            (
                "{{stage}} {{outcome}}",
                f"sum by (stage, outcome) (rate(cofi_files_total[{RATE}]))",
            )
        ],
        "ops",
        (12, 8, 12, 8),
        "timeseries",
    ),
    (
        "Model request latency per stage (ok calls)",
        _quantiles("cofi_model_request_seconds", "stage", '{outcome="ok"}'),
        "s",
        (0, 16, 12, 9),
        "timeseries",
    ),
    (
        "Model request latency per GPU host (ok calls)",
        _quantiles("cofi_model_request_seconds", "host", '{outcome="ok"}'),
        "s",
        (12, 16, 12, 9),
        "timeseries",
    ),
    (
        "Dead letters per second (failed files, poison messages)",
        [
            (
                "{{stage}} failed",
                f'sum by (stage) (rate(cofi_files_total{{outcome="failed"}}[{RATE}]))',
            ),
            (
                "{{stage}} {{reason}}",
                f"sum by (stage, reason) (rate(cofi_dead_letters_total[{RATE}]))",
            ),
        ],
        "ops",
        (0, 25, 12, 8),
        "timeseries",
    ),
    (
        "Retries and failed calls per second",
        [
            ("{{stage}} retries", f"sum by (stage) (rate(cofi_retries_total[{RATE}]))"),
            (
                "{{stage}} {{outcome}}",
                "sum by (stage, outcome) "
                f'(rate(cofi_model_request_seconds_count{{outcome!="ok"}}[{RATE}]))',
            ),
        ],
        "ops",
        (12, 25, 12, 8),
        "timeseries",
    ),
    (
        "Tracker write latency (one poll's transaction)",
        _tracker_quantiles(),
        "s",
        (0, 33, 12, 8),
        "timeseries",
    ),
    (
        "Tracker writes per second, by outcome",
        [
            (
                "{{outcome}}",
                f"sum by (outcome) (rate(cofi_tracker_write_seconds_count[{RATE}]))",
            )
        ],
        "ops",
        (12, 33, 12, 8),
        "timeseries",
    ),
    (
        "GPU hosts declared dead",
        [("{{host}}", "max by (host) (cofi_gpu_host_dead)")],
        "short",
        (0, 41, 8, 6),
        "stat",
    ),
    (
        "Open batches",
        [("open", "max(cofi_batches_open)")],
        "short",
        (8, 41, 8, 6),
        "stat",
    ),
    (
        "Minutes since an open batch last moved",
        [
            (
                "{{batch}}",
                "(time() - max by (batch) (cofi_batch_last_progress_timestamp_seconds)) / 60",
            )
        ],
        "m",
        (16, 41, 8, 6),
        "stat",
    ),
    (
        "Replicas up per service (of those scraped)",
        [("{{job}}", 'sum by (job) (up{job=~"$job"})')],
        "short",
        (0, 53, 12, 8),
        "timeseries",
    ),
    (
        "Open circuits (stage @ host, why)",
        [
            (
                "{{stage}} @ {{host}} {{reason}}",
                'max by (stage, host, reason) (cofi_stage_circuit_open{host=~"$host"})',
            )
        ],
        "short",
        (12, 53, 12, 8),
        "timeseries",
    ),
    (
        "Process CPU per replica (cores)",
        [
            (
                "{{service}} {{instance}}",
                "sum by (service, instance) "
                f'(rate(process_cpu_seconds_total{{job=~"$job"}}[{RATE}]))',
            )
        ],
        "short",
        (0, 61, 12, 8),
        "timeseries",
    ),
    (
        "Process memory per replica (resident)",
        [
            (
                "{{service}} {{instance}}",
                'sum by (service, instance) (process_resident_memory_bytes{job=~"$job"})',
            )
        ],
        "bytes",
        (12, 61, 12, 8),
        "timeseries",
    ),
    (
        "Batch completion time, first event to Complete (over a day)",
        [
            (
                f"p{round(q * 100)}",
                f"histogram_quantile({q}, sum by (le) "
                "(increase(cofi_batch_completion_seconds_bucket[1d])))",
            )
            for q in (0.5, 0.95)
        ],
        "s",
        (0, 69, 12, 8),
        "timeseries",
    ),
    (
        "SLOs: failed files and batches over 4 h (ratio, 1 h)",
        [
            ("files failed", "max(cofi:file_failure_ratio:rate1h)"),
            ("batches over 4 h", "max(cofi:batch_slow_ratio:rate1h)"),
        ],
        "percentunit",
        (12, 69, 12, 8),
        "timeseries",
    ),
    (
        "Versions running",
        [
            (
                "{{job}} {{version}} {{commit}} py{{python}}",
                "count by (job, version, commit, python) (cofi_build_info)",
            )
        ],
        "short",
        (0, 47, 24, 6),
        "table",
    ),
)


def queries() -> list[str]:
    """Every PromQL expression of the dashboard, as written (with Grafana's `$__rate_interval`)."""
    return [expr for _, targets, _, _, _ in PANELS for _, expr in targets]


def _panel(pid: int, panel: Panel) -> dict[str, Any]:
    title, targets, unit, (x, y, w, h), kind = panel
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "editorMode": "code",
                "expr": expr,
                "legendFormat": legend,
                "range": kind != "table",
                "instant": kind == "table",
                "format": "table" if kind == "table" else "time_series",
            }
            for i, (legend, expr) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }


def _variable(label: str, metric: str) -> dict[str, Any]:
    """A multi-select of the label's values, "All" by default (its regex matches any)."""
    return {
        "name": label,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": f"label_values({metric}, {label})", "refId": label},
        "definition": f"label_values({metric}, {label})",
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
    }


def build() -> dict[str, Any]:
    return {
        "uid": "cofi-metrics",
        "title": "cofi metrics",
        "description": "Generated by `python -m cli.grafana_metrics_dashboard`; edit that, not "
        "this file. Alerts and runbooks: deploy/prometheus/alerts.yml, docs/operations.md.",
        "tags": ["cofi"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [_variable("job", "up"), _variable("host", "cofi_in_flight")]},
        "panels": [_panel(i + 1, p) for i, p in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cli.grafana_metrics_dashboard", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    ns = parser.parse_args(argv)
    if ns.check:
        if not PATH.exists() or PATH.read_text() != render():
            print(f"{PATH} is stale: run python -m cli.grafana_metrics_dashboard", file=sys.stderr)
            return 1
        return 0
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(render())
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
