"""The tracker's metrics: write outcomes and the open batches, from batchStatus."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

import services.tracker.tables as tracker_tables
from services.tracker.batch_watch import open_batches_probe
from shared.metrics import Metrics
from tests.unit.test_observability import value


def test_tracker_write_outcomes_exist_before_the_first_write() -> None:
    metrics = Metrics()
    for outcome in ("ok", "error"):
        assert value(metrics, "cofi_tracker_write_seconds_count", outcome=outcome) == 0


def test_open_batches_are_reported_and_a_finished_one_is_forgotten() -> None:
    metrics = Metrics()
    batches = metrics.batches()
    batches.open_batches({"b1": 100.0, "b2": 200.0})
    name = "cofi_batch_last_progress_timestamp_seconds"
    assert value(metrics, name, batch="b1") == 100
    assert value(metrics, "cofi_batches_open") == 2
    batches.open_batches({"b2": 250.0})
    assert value(metrics, name, batch="b1") is None
    assert value(metrics, name, batch="b2") == 250
    assert value(metrics, "cofi_batches_open") == 1


async def test_the_open_batches_probe_reads_batch_status(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tracker_tables.metadata.create_all)
            at = datetime(2026, 1, 1, 12, 0, 0)
            await conn.execute(
                tracker_tables.batch_status.insert(),
                [
                    {"batchId": "open", "status": "denoiseDone", "updatedAt": at},
                    {"batchId": "done", "status": "Complete", "updatedAt": at},
                    {"batchId": "gone", "status": "Cancelled", "updatedAt": at},
                ],
            )
        metrics = Metrics()
        await open_batches_probe(engine, metrics.batches())()
        name = "cofi_batch_last_progress_timestamp_seconds"
        assert value(metrics, name, batch="open") == at.replace(tzinfo=UTC).timestamp()
        assert value(metrics, name, batch="done") is None
        assert value(metrics, "cofi_batches_open") == 1
    finally:
        await engine.dispose()


async def test_a_batch_is_timed_once_when_it_leaves_the_open_batches_complete(
    tmp_path: Path,
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    table = tracker_tables.batch_status
    created = datetime(2026, 1, 1, 12, 0, 0)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tracker_tables.metadata.create_all)
            await conn.execute(
                table.insert(),
                [
                    {"batchId": "slow", "status": "denoiseDone", "createdAt": created},
                    {"batchId": "cut", "status": "denoiseDone", "createdAt": created},
                    # Complete before the first probe: not timed (when did it complete?).
                    {"batchId": "old", "status": "Complete", "createdAt": created,
                     "completedAt": created},
                ],
            )  # fmt: skip
        metrics = Metrics()
        probe = open_batches_probe(engine, metrics.batches())
        await probe()
        assert value(metrics, "cofi_batch_completion_seconds_count") == 0
        async with engine.begin() as conn:
            done = {"status": "Complete", "completedAt": created + timedelta(hours=5)}
            await conn.execute(table.update().where(table.c.batchId == "slow").values(**done))
            await conn.execute(
                table.update().where(table.c.batchId == "cut").values(status="Cancelled")
            )
        await probe()
        await probe()  # seen complete once: timed once
        assert value(metrics, "cofi_batch_completion_seconds_count") == 1
        assert value(metrics, "cofi_batch_completion_seconds_sum") == 5 * 3600
        # Over the objective's 4 h: outside its bucket.
        assert value(metrics, "cofi_batch_completion_seconds_bucket", le="14400.0") == 0
        assert value(metrics, "cofi_batch_completion_seconds_bucket", le="28800.0") == 1
    finally:
        await engine.dispose()
