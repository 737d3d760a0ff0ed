"""One poll's share of the live milestones (live_milestones.py): the batches' digests, their
kept indexes moved with the poll's files, the running stages' rows to write and delete."""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tracker.batch_status import BatchStatusRow
from services.tracker.live_milestones import LiveMilestones
from services.tracker.milestones import stage_milestones
from services.tracker.poll_changes import (
    STAGE_PROGRESS,
    STAGE_START,
    FileChange,
    LogRow,
    file_key,
)
from services.tracker.poll_plan import BatchFile, BatchPlan, FileId, batch_index
from services.tracker.resolution_index import IndexedFile, moved_digest
from services.tracker.tables import batch_execution_log, file_distribution
from shared.pipeline import PIPELINE

# The milestones a running stage's rows are (stage_complete waits for the stage's end).
LIVE_TYPES: Final = (STAGE_START, STAGE_PROGRESS)


def indexed(c: FileChange) -> IndexedFile:
    return IndexedFile(file_key(c.file_name), c.created_at, c.resolutions)


def carry(
    live: LiveMilestones,
    existing: Mapping[str, BatchStatusRow],
    old_rows: Mapping[FileId, FileChange],
    dropped: Sequence[FileChange],
    files: Sequence[FileChange],
) -> dict[str, int | None]:
    """Each batch's digest after the poll's file writes (from the rows they replace), with
    the kept indexes that matched the row moved the same way; a kept index that no longer
    matches is forgotten."""
    before: dict[str, list[IndexedFile]] = defaultdict(list)
    after: dict[str, list[IndexedFile]] = defaultdict(list)
    for c in dropped:
        before[c.batch_id].append(indexed(c))
    for c in files:
        old = old_rows.get(c.key)
        if old is not None:
            before[c.batch_id].append(indexed(old))
        after[c.batch_id].append(indexed(c))
    digests: dict[str, int | None] = {}
    for batch_id, row in existing.items():
        digest = digests[batch_id] = moved_digest(
            row.resolutions_digest, before[batch_id], after[batch_id]
        )
        index = live.index(batch_id, row.resolutions_digest)
        if index is None:
            continue
        for f in before[batch_id]:
            index.drop(f.key)
        for f in after[batch_id]:
            index.put(f)
        if index.digest != digest:
            live.forget([batch_id])
    return digests


@dataclass
class LiveWrites:
    """What the poll writes of the running stages' milestones."""

    rows: list[LogRow] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # eventKeys
    reset: dict[str, list[str]] = field(default_factory=dict)  # batch: stages read anew
    batches: set[str] = field(default_factory=set)  # whose live rows these are


async def plan_live(
    conn: AsyncConnection,
    live: LiveMilestones,
    batch: BatchPlan,
    row: BatchStatusRow,
    digest: int | None,
    everyone: Sequence[BatchFile] | None,
    interval: int,
    out: LiveWrites,
) -> int | None:
    """Add the batch's running stages' rows to `out`; return its digest (known once its
    files are read)."""
    batch_id = row.batch_id
    if not batch.running:
        live.forget([batch_id])
        if digest is None and everyone is not None:
            return batch_index(everyone).digest
        return digest
    index = live.index(batch_id, digest)
    if index is None:
        files = everyone if everyone is not None else await read_batch_files(conn, batch_id)
        if any(f.resolutions is None for f in files):
            return digest  # rows of a version before resolutions: provisional rows as before
        index = batch_index(files)
        live.keep(batch_id, index)
        out.reset[batch_id] = [PIPELINE[s.position].name for s in batch.running]
    unmoved = live.unmoved(batch_id, row.total_files)
    rows, _ = stage_milestones(
        batch_id,
        batch.running,
        index,
        total_files=row.total_files,
        closed_at=row.closed_at,
        interval=interval,
        unmoved=unmoved,
    )
    stages = [PIPELINE[s.position].name for s in batch.running]
    write, gone = live.moved(batch_id, rows, stages, unmoved, row.total_files)
    out.rows += write
    out.gone += gone
    out.batches.add(batch_id)
    return index.digest


async def read_batch_files(conn: AsyncConnection, batch_id: str) -> list[BatchFile]:
    """Every file of the batch, as the milestones and the batch's completion read them."""
    t = file_distribution
    query = select(t.c.fileKey, t.c.createdAt, t.c.finishedAt, t.c.stageResolutions).where(
        t.c.batchId == batch_id
    )
    return [BatchFile(r[0], r[1], r[2], r[3]) for r in await conn.execute(query)]


async def delete_replaced(conn: AsyncConnection, writes: LiveWrites) -> None:
    """Delete the running stages' rows that are gone, and every start and progress row of a
    stage whose index was read anew (what the table held of it is not known)."""
    t = batch_execution_log
    for batch_id, stages in writes.reset.items():
        await conn.execute(
            delete(t).where(
                t.c.batchId == batch_id,
                t.c.stage.in_(stages),
                t.c.eventType.in_(LIVE_TYPES),
            )
        )
    if writes.gone:
        await conn.execute(delete(t).where(t.c.eventKey.in_(sorted(set(writes.gone)))))
