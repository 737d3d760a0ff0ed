"""The log is the source of truth: lose the tracker's database mid-batch and rebuild it."""

from pathlib import Path

from tests.crash.harness import ChaosSettings
from tests.crash.scenario import Breakables
from tests.crash.scenarios import SCENARIOS, run_scenario


async def test_database_lost_mid_batch_a_fresh_tracker_rebuilds_the_same_tables(
    breakables: Breakables, crash_settings: ChaosSettings, crash_audio: list[Path], tmp_path: Path
) -> None:
    """Drop the database mid-batch; a tracker in a new group fills an empty one from the
    topics while the batch goes on. The batch completes, every invariant holds, and the
    tables equal, ids aside, those a third tracker rebuilds from the topics afterwards."""
    logs = tmp_path / "logs"
    outcome = await run_scenario(
        SCENARIOS["database_lost"], crash_settings, breakables, crash_audio, logs
    )
    assert outcome.violations == [], f"database_lost (logs in {logs}):\n" + "\n".join(
        outcome.violations
    )
    assert outcome.lost == 0 and outcome.duplicates == 0
    assert sum(outcome.terminal.values()) == crash_settings.files
    what = [f["what"] for f in outcome.faults]
    assert len(what) == 2 and what[0].startswith("database lost") and "rebuilds" in what[1]
