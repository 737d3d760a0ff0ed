"""Write a poll's changes in one transaction with bulk, idempotent statements.

Per poll, whatever its size: a locking read of the touched batches' `batchStatus` rows
(inserted first only for a new batch), one upsert of `fileDistribution` (a row per file,
merged in Python first; upserts.py), insert-ignores of `processing_logs`, `deadLetters` and
`batchExecutionLog`, one grouped SELECT of the touched batches' files, one upsert of
`batchStatus`. Every statement is idempotent (flags only set, set-once values kept, counts
recomputed), so a replayed poll writes nothing new. MySQL/MariaDB and SQLite differ only in
upsert syntax; on MySQL the bulk statements go to the driver precompiled (bulk_insert.py).
"""

from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tracker.batch_status import (
    BatchStatusRow,
    FileSignature,
    LoggedMilestones,
    recompute,
)
from services.tracker.bulk_insert import Params, execute_many, insert_ignore
from services.tracker.columns import (
    ATTEMPT,
    DEAD_LETTER,
    LOG,
    batch_params,
    batch_row,
    file_params,
)
from services.tracker.rows import (
    STAGE_COMPLETE,
    STAGE_PROGRESS,
    STAGE_START,
    FileChange,
    LogRow,
    PollChanges,
    file_key,
)
from services.tracker.tables import (
    batch_execution_log,
    batch_status,
    dead_letters,
    file_distribution,
    processing_logs,
)
from services.tracker.upserts import batch_upsert, file_upsert
from shared.pipeline import PIPELINE


async def apply_changes(
    conn: AsyncConnection, changes: PollChanges, *, progress_interval: int
) -> None:
    """Apply one poll's changes inside the caller's transaction."""
    mysql = conn.dialect.name in ("mysql", "mariadb")
    batch_ids = sorted(changes.batches)
    existing = await _lock_batches(conn, changes, batch_ids, mysql)
    await _reject_late_files(conn, changes, existing)
    if changes.files:
        files = [file_params(c) for c in changes.files.values()]
        await execute_many(conn, "upsert fileDistribution", partial(file_upsert, mysql), files)
    await _cancel_unfinished_files(conn, changes, existing)
    await insert_ignore(
        conn, processing_logs, [ATTEMPT.params(a) for a in changes.attempts.values()], mysql
    )
    await insert_ignore(
        conn, dead_letters, [DEAD_LETTER.params(d) for d in changes.dead_letters.values()], mysql
    )
    await insert_ignore(
        conn, batch_execution_log, [LOG.params(r) for r in changes.logs.values()], mysql
    )
    if not batch_ids:
        return
    signatures = await _signatures(conn, batch_ids)
    logged = await _logged_milestones(conn, batch_ids)
    rows: list[BatchStatusRow] = []
    milestones: list[LogRow] = []
    for batch_id in batch_ids:
        row, logs = recompute(
            batch_id,
            existing.get(batch_id),
            changes.batches[batch_id],
            signatures.get(batch_id, []),
            logged.get(batch_id, {}),
            progress_interval,
        )
        rows.append(row)
        milestones += logs
    params = [batch_params(r) for r in rows]
    await execute_many(conn, "upsert batchStatus", partial(batch_upsert, mysql), params)
    await insert_ignore(conn, batch_execution_log, [LOG.params(r) for r in milestones], mysql)


async def _lock_batches(
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


async def _reject_late_files(
    conn: AsyncConnection, changes: PollChanges, existing: dict[str, BatchStatusRow]
) -> None:
    """A file new to a closed batch that already has its `file_count` files is rejected:
    none of its events are written (the batch stays Complete, its `completedAt` kept) and a
    dead letter says why. Among a poll's new files the earliest fill what room is left."""
    room: dict[str, tuple[int, int]] = {}  # batch -> (file_count, files it may still get)
    for batch_id, touch in changes.batches.items():
        old = existing.get(batch_id)
        counts = (old.total_files if old else None, touch.total_files)
        total = max((c for c in counts if c is not None), default=None)
        if total is not None:
            room[batch_id] = (total, total - (old.known_files if old else 0))
    per_batch: dict[str, list[FileChange]] = {}
    for change in changes.files.values():
        if change.batch_id in room:
            per_batch.setdefault(change.batch_id, []).append(change)
    crowded = {b: cs for b, cs in per_batch.items() if len(cs) > room[b][1]}
    if not crowded:
        return  # every file the poll names fits: nothing to look up
    t = file_distribution
    names = [c for cs in crowded.values() for c in cs]
    query = select(t.c.batchId, t.c.fileKey).where(
        t.c.batchId.in_(sorted(crowded)),
        t.c.fileKey.in_(sorted({file_key(c.file_name) for c in names})),
    )
    known = {(row.batchId, row.fileKey) for row in await conn.execute(query)}
    for batch_id, batch_changes in crowded.items():
        total, left = room[batch_id]
        new = sorted(
            (c for c in batch_changes if (batch_id, file_key(c.file_name)) not in known),
            key=lambda c: (c.created_at, c.file_name),
        )
        for change in new[max(0, left) :]:
            changes.reject_file(
                change.key,
                f"rejected: uploaded after batch {batch_id} closed with its {total} files",
            )


def _new_batch_rows(changes: PollChanges, batch_ids: list[str]) -> list[Params]:
    return [
        {
            "batchId": b,
            "createdAt": changes.batches[b].first_at,
            "updatedAt": changes.batches[b].last_at,
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


async def _cancel_unfinished_files(
    conn: AsyncConnection, changes: PollChanges, existing: dict[str, BatchStatusRow]
) -> None:
    """Files of a cancelled batch that have no terminal state never will (stages stop
    starting them): they end `cancelled` at the batch's cancel time. Run in every poll that
    touches a cancelled batch, so files first seen after the cancel are caught too; a file
    that finishes anyway later still ends done, skipped or failed (they outrank cancelled)."""
    params: list[Params] = []
    for batch_id, touch in changes.batches.items():
        old = existing.get(batch_id)
        times = [t for t in (old.cancelled_at if old else None, touch.cancelled_at) if t]
        if times:
            params.append({"batch": batch_id, "at": min(times)})
    if not params:
        return
    t = file_distribution
    await conn.execute(
        update(t)
        .where(t.c.batchId == bindparam("batch"), t.c.terminalState.is_(None))
        .values(terminalState="cancelled", finishedAt=bindparam("at")),
        params,
    )


async def _signatures(
    conn: AsyncConnection, batch_ids: list[str]
) -> dict[str, list[FileSignature]]:
    t = file_distribution
    one: ColumnElement[Any] = literal_column("1")
    zero: ColumnElement[Any] = literal_column("0")
    # Per stage, 1 when the file's columns show it went through: its flag, or its decision.
    through = [
        func.coalesce(t.c[s.flag_column], zero)
        if s.flag_column is not None
        else case((t.c[str(s.decision_column)].is_not(None), one), else_=zero)
        for s in PIPELINE
    ]
    keys = [t.c.batchId, *through, t.c.triageRoute, t.c.terminalState, t.c.failedStage]
    query = (
        select(*keys, func.count(), func.max(t.c.finishedAt))
        .where(t.c.batchId.in_(batch_ids))
        .group_by(*keys)
    )
    result: dict[str, list[FileSignature]] = {}
    for row in await conn.execute(query):
        values: tuple[Any, ...] = tuple(row)
        batch_id, marks = values[0], values[1 : 1 + len(PIPELINE)]
        route, terminal, failed_stage, count, finished_at = values[-5:]
        result.setdefault(batch_id, []).append(
            FileSignature(
                count=int(count),
                finished=frozenset(s.name for s, mark in zip(PIPELINE, marks, strict=True) if mark),
                triage_route=route,
                terminal_state=terminal,
                failed_stage=failed_stage,
                finished_at=finished_at,
            )
        )
    return result


async def _logged_milestones(
    conn: AsyncConnection, batch_ids: list[str]
) -> dict[str, dict[str, LoggedMilestones]]:
    t = batch_execution_log
    keys = [t.c.batchId, t.c.stage, t.c.eventType]
    query = (
        select(*keys, func.max(t.c.processedFiles))
        .where(
            t.c.batchId.in_(batch_ids),
            t.c.eventType.in_([STAGE_START, STAGE_PROGRESS, STAGE_COMPLETE]),
        )
        .group_by(*keys)
    )
    found: dict[str, dict[str, LoggedMilestones]] = {}
    for row in await conn.execute(query):
        batch_id, stage, event_type, processed = (row[0], row[1], row[2], row[3])
        stages = found.setdefault(batch_id, {})
        m = stages.get(stage, LoggedMilestones())
        if event_type == STAGE_START:
            m = LoggedMilestones(True, m.completed, m.progress)
        elif event_type == STAGE_COMPLETE:
            m = LoggedMilestones(m.started, True, m.progress)
        else:
            m = LoggedMilestones(m.started, m.completed, int(processed or 0))
        stages[stage] = m
    return found
