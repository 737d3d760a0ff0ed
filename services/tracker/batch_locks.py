"""The touched batches' `batchStatus` rows, made sure of and locked for the poll (store.py)."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tracker.batch_status import BatchStatusRow
from services.tracker.bulk_insert import Params, insert_ignore
from services.tracker.columns import batch_row
from services.tracker.poll_changes import PollChanges
from services.tracker.signatures import encode_counts
from services.tracker.tables import batch_status


async def lock_batches(
    conn: AsyncConnection, changes: PollChanges, batch_ids: list[str], mysql: bool
) -> dict[str, BatchStatusRow]:
    """Make sure the touched batches have a row and lock them, in a fixed order.

    Two tracker instances (partitions split across a consumer group) may touch one batch at
    once; holding its batchStatus row lock from before the file writes until the commit
    makes their recounts see each other's files.

    MySQL: the rows are read (and locked) first and only the missing ones inserted: a batch
    has a row after its first poll, and an INSERT IGNORE that hits it costs a statement and a
    SHOW WARNINGS round trip in every poll. A row another instance inserts between the read
    and the insert is ignored by the insert and locked by the second read.

    SQLite has no row locks but a single writer: the insert comes first so that the
    transaction holds the write lock before it reads, and two instances' polls run one after
    the other (a read first would let both read, then write over each other's counts).
    """
    if not batch_ids:
        return {}
    if not mysql:
        await insert_ignore(conn, batch_status, _new_batch_rows(changes, batch_ids), mysql)
        return await _select_for_update(conn, batch_ids)
    existing = await _select_for_update(conn, batch_ids)
    missing = [b for b in batch_ids if b not in existing]
    if missing:
        await insert_ignore(conn, batch_status, _new_batch_rows(changes, missing), mysql)
        existing.update(await _select_for_update(conn, missing))
    return existing


def _new_batch_rows(changes: PollChanges, batch_ids: list[str]) -> list[Params]:
    return [
        {
            "batchId": b,
            "createdAt": changes.batches[b].first_at,
            "updatedAt": changes.batches[b].last_at,
            "fileCounts": encode_counts(()),  # no files yet
            "resolutionsDigest": 0,
        }
        for b in batch_ids
    ]


async def _select_for_update(
    conn: AsyncConnection, batch_ids: list[str]
) -> dict[str, BatchStatusRow]:
    query = (
        select(batch_status)
        .where(batch_status.c.batchId.in_(batch_ids))
        .order_by(batch_status.c.batchId)
        .with_for_update()
    )
    return {row.batchId: batch_row(row._mapping) for row in await conn.execute(query)}
