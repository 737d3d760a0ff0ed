"""`make chaos` reports: a re-run of some scenarios updates chaos-latest without losing the
others, and says which run each scenario comes from."""

import json
from pathlib import Path

from tests.crash.chaos import merged_with_latest, render_markdown
from tests.crash.harness import ChaosSettings
from tests.crash.invariants import HostRate, Outcome


def outcome(name: str, lost: int = 0, ran_at: str = "") -> Outcome:
    o = Outcome(name, 10_000, lost=lost, seconds=12.0, ran_at=ran_at, isolation_ratio=0.97)
    o.host_rates = [HostRate("127.0.1.2", 3_000, 3_000, 40.0)]
    o.faults = [{"what": "x", "at_progress": "denoise 30%", "seconds": 3, "in_flight_bound": 4}]
    return o


def test_an_outcome_survives_its_report() -> None:
    original = outcome("faulty_host", ran_at="20261202-043348")
    assert Outcome.from_report(original.as_report()).as_report() == original.as_report()


def test_re_run_scenarios_replace_theirs_in_chaos_latest_and_keep_the_rest(
    tmp_path: Path,
) -> None:
    old = [outcome("kill_each_service"), outcome("faulty_host", lost=3), outcome("late_upload")]
    (tmp_path / "chaos-latest.json").write_text(json.dumps([o.as_report() for o in old]))
    (tmp_path / "chaos-latest.md").write_text(
        render_markdown(old, ChaosSettings(), "20261202-043348")
    )
    merged = merged_with_latest([outcome("faulty_host", ran_at="20261202-070000")], tmp_path)
    assert [o.scenario for o in merged] == ["kill_each_service", "faulty_host", "late_upload"]
    assert [o.ran_at for o in merged] == ["20261202-043348", "20261202-070000", "20261202-043348"]
    assert merged[1].lost == 0  # this run's, not the old one's
    table = render_markdown(merged, ChaosSettings(), "20261202-070000")
    assert "| faulty_host | 10000 | 0 | 0 | 0 (0) | 12 |  | yes | 20261202-070000 |" in table
