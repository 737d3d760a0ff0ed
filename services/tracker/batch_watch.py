"""The open batches and when each last moved, for the "batch with no progress" alert; and how
long each batch took, for the batch completion SLO.

A batch is timed when the probe sees it leave the open batches as Complete: one that opens and
completes between two probes, or while no tracker runs, is not timed (the SLO is then measured
on the longer batches, which is the side that can miss it)."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracker.tables import batch_status
from shared.metrics import BatchMetrics
from shared.status import FINISHED, Status

# A batch in one of these states moves no more.
FINAL_STATUSES = tuple(sorted(s.value for s in FINISHED))


def unix_seconds(at: datetime) -> float:
    """The tables store naive UTC (event times)."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def completion_seconds(created: datetime | None, completed: datetime | None) -> float | None:
    """From a batch's first event to its completion; None when either is unknown."""
    if created is None or completed is None:
        return None
    return unix_seconds(completed) - unix_seconds(created)


def open_batches_probe(engine: AsyncEngine, metrics: BatchMetrics) -> Callable[[], Awaitable[None]]:
    """Every batch not Complete or Cancelled, and its `updatedAt`; then, for those open at the
    previous probe and no more, their completion time if they completed."""
    query = select(
        batch_status.c.batchId, batch_status.c.updatedAt, batch_status.c.createdAt
    ).where(batch_status.c.status.not_in(FINAL_STATUSES))
    was_open: set[str] | None = None  # unknown until the first probe: nothing is timed then

    async def refresh() -> None:
        nonlocal was_open
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            left = (was_open or set()) - {r.batchId for r in rows}
            ended = (
                (
                    await conn.execute(
                        select(batch_status.c.createdAt, batch_status.c.completedAt)
                        .where(batch_status.c.batchId.in_(sorted(left)))
                        .where(batch_status.c.status == Status.COMPLETE.value)
                    )
                ).all()
                if left
                else []
            )
        was_open = {r.batchId for r in rows}
        for row in ended:
            seconds = completion_seconds(row.createdAt, row.completedAt)
            if seconds is not None:
                metrics.completed(seconds)
        metrics.open_batches(
            {
                r.batchId: unix_seconds(r.updatedAt or r.createdAt)
                for r in rows
                if r.updatedAt or r.createdAt
            }
        )

    return refresh
