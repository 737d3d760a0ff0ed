"""A 10,000-file batch through the tracker into MariaDB: about 10,000 / PROGRESS_UPDATE_INTERVAL
progress rows per stage, and one processing_logs row per attempt.

The batch's events (every stage, transient retries, failures at every stage, triage skips, a
file failed and retried) go through `Tracker.apply_events` in polls of 500 to 2,000 events, as
SinkRunner hands them over. The counts are printed: `pytest -s` or `-rP` shows them.
"""

import logging
import random
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from services.tracker.engine import make_engine
from services.tracker.migrate import migrate
from services.tracker.tables import batch_execution_log, batch_status, processing_logs
from shared.events import FileFailed, FileStageCompleted
from tests.tracker_scenario import STAGES, apply_in_polls, build_scenario, tracked, tracker_for

FILES = 10_000
INTERVAL = 100


async def test_a_ten_thousand_file_batch_writes_the_expected_row_counts(
    mariadb_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # INSERT IGNORE skipping a row it has is the point; keep -rP's output to the counts.
    caplog.set_level(logging.ERROR, logger="asyncmy")
    await migrate(mariadb_url)
    sc = build_scenario("batch-10k", n=FILES)
    events = tracked(sc)
    attempts_in_events = sum(
        len(e.attempts) for e in sc.events if isinstance(e, FileStageCompleted | FileFailed)
    )
    engine = make_engine(mariadb_url)
    rng = random.Random(10_000)
    started = time.monotonic()
    try:
        await apply_in_polls(
            tracker_for(engine, interval=INTERVAL), events, lambda: rng.randint(500, 2000)
        )
        seconds = time.monotonic() - started
        async with engine.connect() as conn:
            log = batch_execution_log.c
            milestones = Counter(
                {
                    (stage, kind): int(n)
                    for stage, kind, n in await conn.execute(
                        select(log.stage, log.eventType, func.count()).group_by(
                            log.stage, log.eventType
                        )
                    )
                }
            )
            pl = processing_logs.c
            attempts = Counter(
                {
                    (stage, status): int(n)
                    for stage, status, n in await conn.execute(
                        select(pl.stage_name, pl.status, func.count()).group_by(
                            pl.stage_name, pl.status
                        )
                    )
                }
            )
            status = (
                await conn.execute(select(batch_status.c.status, batch_status.c.failedFiles))
            ).one()
    finally:
        await engine.dispose()

    lines = [
        f"{FILES:,} files, {len(events):,} events in polls of 500-2,000, "
        f"PROGRESS_UPDATE_INTERVAL={INTERVAL}: applied in {seconds:.1f} s",
        f"{'stage':<11}{'progress':>9}{'start':>6}{'complete':>9}{'file_error':>11}"
        f"{'attempts ok':>12}{'failed':>7}",
    ]
    for stage in STAGES:
        lines.append(
            f"{stage:<11}{milestones[stage, 'stage_progress']:>9}"
            f"{milestones[stage, 'stage_start']:>6}{milestones[stage, 'stage_complete']:>9}"
            f"{milestones[stage, 'file_error']:>11}{attempts[stage, 'success']:>12}"
            f"{attempts[stage, 'failure']:>7}"
        )
    lines.append(
        f"processing_logs rows: {sum(attempts.values()):,}; attempts in the events: "
        f"{attempts_in_events:,}"
    )
    print("\n" + "\n".join(lines))

    for stage in STAGES:
        # Every file passes every stage one way or another, so exactly 10,000 / 100.
        assert milestones[stage, "stage_progress"] == FILES // INTERVAL, stage
        assert milestones[stage, "stage_start"] == milestones[stage, "stage_complete"] == 1
    assert sum(n for (_, kind), n in milestones.items() if kind == "file_error") == sc.file_errors
    assert sum(attempts.values()) == attempts_in_events == len(sc.attempts)
    assert status == ("Complete", sc.terminal["failed"])
