"""The tracker's metrics: write outcomes and the open batches, from batchStatus."""

from datetime import UTC, datetime
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
