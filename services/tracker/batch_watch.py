"""The open batches and when each last moved, for the "batch with no progress" alert."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracker.tables import batch_status
from shared.metrics import BatchMetrics
from shared.status import FINISHED

# A batch in one of these states moves no more.
FINAL_STATUSES = tuple(sorted(s.value for s in FINISHED))


def unix_seconds(at: datetime) -> float:
    """The tables store naive UTC (event times)."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def open_batches_probe(engine: AsyncEngine, metrics: BatchMetrics) -> Callable[[], Awaitable[None]]:
    """One query: every batch not Complete or Cancelled, and its `updatedAt`."""
    query = select(
        batch_status.c.batchId, batch_status.c.updatedAt, batch_status.c.createdAt
    ).where(batch_status.c.status.not_in(FINAL_STATUSES))

    async def refresh() -> None:
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        metrics.open_batches(
            {
                r.batchId: unix_seconds(r.updatedAt or r.createdAt)
                for r in rows
                if r.updatedAt or r.createdAt
            }
        )

    return refresh
