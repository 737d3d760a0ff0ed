"""The 5-minute game day of `make test` (`make gameday` runs 60): seeded batches under
random overlapping faults; it fails on any broken invariant and writes its report.

`GAMEDAY_SEED` picks the seed (default 1; the report names it), `GAMEDAY_DURATION_MIN` the
length. The shared broker carries it (the broker-killing faults are `make gameday`'s) and a
private MariaDB, which strict mode and outages may break.
"""

import os

import pytest

from tests.gameday.run import GameDaySettings, run_game_day

# Invariants broken by a defect that is found, filed and not fixed yet: the run still reports
# them, every other invariant must hold, and the test says xfail instead of pass. Remove an
# entry with its fix. None today.
KNOWN_OPEN: dict[str, str] = {}


async def test_a_five_minute_game_day_keeps_every_invariant() -> None:
    seed = int(os.environ.get("GAMEDAY_SEED", "1"))
    minutes = float(os.environ.get("GAMEDAY_DURATION_MIN", "5"))
    settings = GameDaySettings(
        seed=seed,
        duration_s=minutes * 60,
        bound_s=120.0,
        broker="shared",
        database="private",
        command=f"make gameday DURATION={minutes:g} BROKER=shared BOUND=120",
    )
    result = await run_game_day(settings)
    failed = {name: inv.violations for name, inv in result.invariants.items() if not inv.passed}
    unexpected = {name: v for name, v in failed.items() if name not in KNOWN_OPEN}
    assert not unexpected, f"game day seed {seed} (report {result.report}): {unexpected}"
    if failed:
        pytest.xfail(f"known open defects (report {result.report}): {sorted(failed)}")
