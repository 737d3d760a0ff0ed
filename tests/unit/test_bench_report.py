import json
import re
from pathlib import Path

from bench.report import (
    FINDINGS,
    Figure,
    RunInfo,
    Section,
    readme_with_figures,
    write_reports,
)
from bench.tracker_rate import chunks

RUN = RunInfo(
    run_id="r1",
    started_at="2026-01-01 00:00 UTC",
    commit="abc123",
    command="make bench",
    machine="2 cores",
    duration_s=600,
)


def sections() -> list[Section]:
    return [
        Section(
            "1. Orchestration overhead",
            [
                Figure.at_most("overhead", 2.0, "ratio", 1.5),
                Figure.info("makespan", 130.0, "s"),
            ],
            ["details of figure 1"],
        ),
        Section("4. Latency", [Figure.at_most("p50", 80.0, "ms", 100)]),
    ]


def test_targets_decide_whether_a_figure_is_met() -> None:
    assert Figure.at_most("x", 1.5, "ratio", 1.5).met is True
    assert Figure.at_most("x", 1.6, "ratio", 1.5).met is False
    assert Figure.at_least("x", 0.89, "ratio", 0.9).met is False
    assert Figure.info("x", 3.0, "s").met is None


def test_json_report_lists_every_figure_with_its_target_and_the_history_grows(
    tmp_path: Path,
) -> None:
    json_path = write_reports(tmp_path, RUN, sections())
    figures = json.loads(json_path.read_text())
    assert [set(f) for f in figures] == [{"name", "value", "unit", "target", "met"}] * 3
    assert figures[0] == {
        "name": "overhead",
        "value": 2.0,
        "unit": "ratio",
        "target": "<= 1.5",
        "met": False,
    }
    write_reports(tmp_path, RUN, sections())
    history = json.loads((tmp_path / "bench_history.json").read_text())
    assert len(history) == 2
    markdown = (tmp_path / "bench.md").read_text()
    assert "Targets unmet: overhead." in markdown
    assert "details of figure 1" in markdown
    assert markdown.count("`abc123`: overhead 2 ratio; p50 80.0 ms") == 2


def test_the_link_to_the_findings_holds_from_any_report_folder(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "fleet-cost"
    write_reports(out, RUN, sections())
    link = re.search(r"\[bench/FINDINGS.md\]\(([^)]+)\)", (out / "bench.md").read_text())
    assert link is not None
    assert (out / link.group(1)).resolve() == FINDINGS
    assert FINDINGS.exists()


def test_readme_block_is_replaced_and_the_rest_kept() -> None:
    readme = "# cofi\n\n## Benchmarks\n<!-- bench:start -->\nold\n<!-- bench:end -->\ntail\n"
    updated = readme_with_figures(readme, RUN, sections())
    assert "old" not in updated
    assert "| overhead | 2 | ratio | <= 1.5 | **no** |" in updated
    assert "makespan" not in updated  # only figures with a target
    assert updated.startswith("# cofi\n\n## Benchmarks\n") and updated.endswith("tail\n")
    assert readme_with_figures("no block here\n", RUN, sections()) == "no block here\n"


def test_rows_are_cut_into_consecutive_near_equal_transactions() -> None:
    parts = chunks(list(range(10)), 3)
    assert [list(p) for p in parts] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [len(p) for p in chunks([1], 3)] == [1, 0, 0]
