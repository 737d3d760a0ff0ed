"""Write a poll's changes in one transaction with bulk, idempotent statements.

Per poll, in work proportional to the poll's events, not to its batches' sizes: a locking
read of the touched batches' `batchStatus` rows (inserted first only for a new batch), a
read of the poll's files' rows, merged with the poll's changes in Python
(`FileChange.merge`), one upsert of the rows that changed, insert-ignores of
`processing_logs`, `deadLetters` and `batchExecutionLog`, one upsert of `batchStatus`.

A batch's statuses come from its files' signature counts (`batchStatus.fileCounts`), moved
by each file row the poll changes: a replayed event changes no row, so it moves no count.
Only what needs every file of a batch reads them, once per change that can move it: the
batch's `completedAt`, and a stage's final milestones (milestones.py) when the stage
completes. MySQL/MariaDB and SQLite differ only in upsert syntax; on MySQL the bulk
statements go to the driver precompiled (bulk_insert.py).
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tracker.batch_status import (
    COMPLETE,
    BatchStatusRow,
    FileSignature,
    SignatureKey,
    count_signatures,
    decode_counts,
    earliest,
    encode_counts,
    file_signature,
    latest,
    logged_before,
    recompute,
    signature_key,
)
from services.tracker.bulk_insert import Params, execute_many, insert_ignore
from services.tracker.columns import (
    ATTEMPT,
    DEAD_LETTER,
    FILE_READ_COLUMNS,
    LOG,
    batch_params,
    batch_row,
    file_change,
    file_params,
)
from services.tracker.file_events import decode_events
from services.tracker.milestones import FileResolutions, StageToFinalize, final_milestones
from services.tracker.rows import (
    STAGE_PROGRESS,
    FileChange,
    LogRow,
    PollChanges,
    Resolution,
    Resolutions,
    decode_resolutions,
    file_key,
)
from services.tracker.tables import (
    FLAG_COLUMNS,
    batch_execution_log,
    batch_status,
    dead_letters,
    file_distribution,
    processing_logs,
)
from services.tracker.upserts import batch_upsert, file_upsert, log_upsert
from shared.pipeline import PIPELINE


async def apply_changes(
    conn: AsyncConnection, changes: PollChanges, *, progress_interval: int
) -> None:
    """Apply one poll's changes inside the caller's transaction."""
    mysql = conn.dialect.name in ("mysql", "mariadb")
    batch_ids = sorted(changes.batches)
    existing = await _lock_batches(conn, changes, batch_ids, mysql)
    await _reject_late_files(conn, changes, existing)
    before = await _counts_before(conn, existing)
    counts = {b: dict(c) for b, c in before.items()}
    cancels = {
        b: at
        for b in batch_ids
        if (at := earliest(existing[b].cancelled_at, changes.batches[b].cancelled_at))
    }
    touched = await _write_files(conn, changes, counts, cancels, mysql)
    for batch_id in await _cancel_unfinished_files(conn, changes, existing, counts):
        touched.setdefault(batch_id, _Touched()).finishes = True
    await insert_ignore(
        conn, processing_logs, [ATTEMPT.params(a) for a in changes.attempts.values()], mysql
    )
    await insert_ignore(
        conn, dead_letters, [DEAD_LETTER.params(d) for d in changes.dead_letters.values()], mysql
    )
    await insert_ignore(
        conn, batch_execution_log, [LOG.params(r) for r in changes.logs.values()], mysql
    )
    rows: list[BatchStatusRow] = []
    provisional: list[LogRow] = []
    final: list[LogRow] = []
    stale: list[Params] = []
    for batch_id in batch_ids:
        old = existing[batch_id]
        sigs = count_signatures(counts[batch_id])
        logged = logged_before(
            count_signatures(before[batch_id]), old.total_files, progress_interval
        )
        row, logs = recompute(
            batch_id, old, changes.batches[batch_id], sigs, logged, progress_interval
        )
        row = replace(row, file_counts=encode_counts(sigs))
        row, finals, resolved = await _settle(
            conn, old, row, sigs, touched.get(batch_id, _Touched()), progress_interval
        )
        rows.append(row)
        final_keys = {r.event_key for r in finals}
        provisional += [r for r in logs if r.event_key not in final_keys]
        final += finals
        stale += [
            {"batch": batch_id, "stage": stage, "above": n // progress_interval * progress_interval}
            for stage, n in resolved.items()
        ]
    params = [batch_params(r) for r in rows]
    await execute_many(conn, "upsert batchStatus", partial(batch_upsert, mysql), params)
    # Provisional milestones never overwrite (a replay logs nothing new); final ones do.
    await insert_ignore(conn, batch_execution_log, [LOG.params(r) for r in provisional], mysql)
    await execute_many(
        conn, "upsert batchExecutionLog", partial(log_upsert, mysql), [LOG.params(r) for r in final]
    )
    if stale:
        t = batch_execution_log
        await conn.execute(
            delete(t).where(
                t.c.batchId == bindparam("batch"),
                t.c.stage == bindparam("stage"),
                t.c.eventType == STAGE_PROGRESS,
                t.c.processedFiles > bindparam("above"),
            ),
            stale,
        )


@dataclass
class _Touched:
    """What a poll changed in a batch's files, beyond its counts."""

    # Stage positions where some file's resolution changed; -1: some file's upload time.
    resolutions: set[int] = field(default_factory=set)
    finishes: bool = False  # some file's finishedAt changed


async def _write_files(
    conn: AsyncConnection,
    changes: PollChanges,
    counts: dict[str, dict[SignatureKey, int]],
    cancels: dict[str, datetime],
    mysql: bool,
) -> dict[str, _Touched]:
    """Merge the poll's file changes into their rows (read under the batches' locks), write
    the rows that changed, and move the batches' signature counts with them: a replayed
    event changes no row, so it moves no count."""
    touched: dict[str, _Touched] = {}
    if not changes.files:
        return touched
    old_rows = await _read_files(conn, changes)
    params: list[Params] = []
    for key, change in changes.files.items():
        old = old_rows.get(key)
        new = change if old is None else _merge(old, change)
        cancelled_at = cancels.get(change.batch_id)
        if cancelled_at is not None:
            new = new.cancelled_at(cancelled_at)
        if new == old:
            continue
        params.append(file_params(new))
        batch = counts[change.batch_id]
        new_key = signature_key(file_signature(new))
        batch[new_key] = batch.get(new_key, 0) + 1
        t = touched.setdefault(change.batch_id, _Touched())
        if old is None:
            t.resolutions.update(i for i, r in enumerate(new.resolutions) if r is not None)
            t.resolutions.add(-1)  # a new file's upload time
            t.finishes = t.finishes or new.finished_at is not None
            continue
        old_key = signature_key(file_signature(old))
        batch[old_key] = batch.get(old_key, 0) - 1
        if new.resolutions != old.resolutions:
            width = max(len(new.resolutions), len(old.resolutions))
            t.resolutions.update(
                i for i in range(width) if _at(new.resolutions, i) != _at(old.resolutions, i)
            )
        if new.created_at != old.created_at:
            t.resolutions.add(-1)
        t.finishes = t.finishes or new.finished_at != old.finished_at
    await execute_many(conn, "upsert fileDistribution", partial(file_upsert, mysql), params)
    return touched


def _at(res: Resolutions, i: int) -> Resolution | None:
    return res[i] if i < len(res) else None


def _merge(old: FileChange, change: FileChange) -> FileChange:
    if old.created_at is None or old.updated_at is None:
        # A row the old system wrote has no times: the events' count.
        old = replace(
            old,
            created_at=old.created_at or change.created_at,
            updated_at=old.updated_at or change.updated_at,
        )
    return old.merge(change)


async def _read_files(
    conn: AsyncConnection, changes: PollChanges
) -> dict[tuple[str, str], FileChange]:
    t = file_distribution
    keys = {file_key(name) for _, name in changes.files}
    batches = {batch for batch, _ in changes.files}
    query = select(*(t.c[name] for name in FILE_READ_COLUMNS)).where(
        t.c.batchId.in_(sorted(batches)), t.c.fileKey.in_(sorted(keys))
    )
    found: dict[tuple[str, str], FileChange] = {}
    for row in await conn.execute(query):
        change = file_change(row)
        if change.key in changes.files:
            found[change.key] = change
    return found


async def _counts_before(
    conn: AsyncConnection, existing: dict[str, BatchStatusRow]
) -> dict[str, dict[SignatureKey, int]]:
    """Each batch's signature counts as its row keeps them; a batch the previous version
    wrote (no counts yet) is counted once, by a GROUP BY over its files."""
    counts = {
        b: decode_counts(row.file_counts)
        for b, row in existing.items()
        if row.file_counts is not None
    }
    uncounted = sorted(b for b in existing if b not in counts)
    if uncounted:
        grouped = await _signatures(conn, uncounted)
        for b in uncounted:
            counts[b] = {}
            for sig in grouped.get(b, []):
                key = signature_key(sig)
                counts[b][key] = counts[b].get(key, 0) + sig.count
    return counts


async def _settle(
    conn: AsyncConnection,
    old: BatchStatusRow,
    row: BatchStatusRow,
    sigs: list[FileSignature],
    touched: _Touched,
    interval: int,
) -> tuple[BatchStatusRow, list[LogRow], dict[str, int]]:
    """What needs the batch's every file, done only when it can have changed: the batch's
    `completedAt` (its files' latest finish) when it completes or a finish changes after,
    and the final milestones of a stage that completes, of a complete stage whose
    resolutions change, and of every stage of a cancelled batch (milestones.py)."""
    now = logged_before(sigs, row.total_files, interval)
    then = dict(old.statuses)
    stages = [
        StageToFinalize(position, now[s.name].started, now[s.name].completed)
        for position, s in enumerate(PIPELINE)
        if row.cancelled
        or (
            now[s.name].completed
            and (
                then.get(s.status_column) != COMPLETE
                # its start depends on the stage before (the first: on the uploads, -1)
                or not touched.resolutions.isdisjoint((position, position - 1))
                or row.total_files != old.total_files
                or row.closed_at != old.closed_at
            )
        )
    ]
    complete = row.status == COMPLETE
    completion_moved = complete and (
        old.status != COMPLETE or touched.finishes or row.closed_at != old.closed_at
    )
    if not stages and not completion_moved:
        completed_at = old.completed_at if complete else None
        return replace(row, completed_at=completed_at), [], {}
    files = await _batch_files(conn, row.batch_id)
    if complete:
        last_finish = max((f for _, f, _ in files if f is not None), default=None)
        row = replace(row, completed_at=latest(last_finish, row.closed_at) or row.updated_at)
    if not stages or any(r is None for _, _, r in files):
        return row, [], {}  # files the previous version wrote have no resolutions: left as is
    finals, resolved = final_milestones(
        row.batch_id,
        stages,
        [FileResolutions(c, decode_resolutions(r)) for c, _, r in files],
        total_files=row.total_files,
        closed_at=row.closed_at,
        interval=interval,
    )
    return row, finals, resolved


async def _batch_files(
    conn: AsyncConnection, batch_id: str
) -> list[tuple[datetime | None, datetime | None, str | None]]:
    t = file_distribution
    query = select(t.c.createdAt, t.c.finishedAt, t.c.stageResolutions).where(
        t.c.batchId == batch_id
    )
    return [(r[0], r[1], r[2]) for r in await conn.execute(query)]


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
            "fileCounts": encode_counts(()),  # no files yet
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
    conn: AsyncConnection,
    changes: PollChanges,
    existing: dict[str, BatchStatusRow],
    counts: dict[str, dict[SignatureKey, int]],
) -> list[str]:
    """Files of a cancelled batch that have no terminal state never will (stages stop
    starting them): they end `cancelled` at the batch's earliest cancel time. The poll's own
    files got that in the merge; the batch's other files get it here, once, when the poll
    brings the batch's first (or an earlier) cancel. A file that finishes anyway later still
    ends done, skipped or failed (they outrank cancelled). Returns the batches updated."""
    params: list[Params] = []
    for batch_id, touch in changes.batches.items():
        at, old = touch.cancelled_at, existing[batch_id].cancelled_at
        if at is None or (old is not None and old <= at):
            continue
        params.append({"batch": batch_id, "at": at})
        batch = counts[batch_id]
        for key in [k for k in batch if k.terminal_state is None]:
            moved = key._replace(terminal_state="cancelled")
            batch[moved] = batch.get(moved, 0) + batch.pop(key)
    if not params:
        return []
    t = file_distribution
    unfinished = or_(
        t.c.terminalState.is_(None),
        and_(t.c.terminalState == "cancelled", t.c.finishedAt > bindparam("at")),
    )
    await conn.execute(
        update(t)
        .where(t.c.batchId == bindparam("batch"), unfinished)
        .values(terminalState="cancelled", finishedAt=bindparam("at")),
        params,
    )
    return [p["batch"] for p in params]


async def _signatures(
    conn: AsyncConnection, batch_ids: list[str]
) -> dict[str, list[FileSignature]]:
    t = file_distribution
    keys = [
        t.c.batchId,
        *(t.c[name] for name in FLAG_COLUMNS),
        t.c.ip.is_not(None),
        t.c.triageRoute,
        t.c.terminalState,
        t.c.failedStage,
        t.c.appliedEvents,
    ]
    query = (
        select(*keys, func.count(), func.max(t.c.finishedAt))
        .where(t.c.batchId.in_(batch_ids))
        .group_by(*keys)
    )
    result: dict[str, list[FileSignature]] = {}
    for row in await conn.execute(query):
        values: tuple[Any, ...] = tuple(row)
        batch_id, marks = values[0], values[1 : 1 + len(FLAG_COLUMNS)]
        assigned, route, terminal, failed_stage, applied, count, finished_at = values[-7:]
        flags = frozenset(f for f, mark in zip(FLAG_COLUMNS, marks, strict=True) if mark)
        one = file_signature(
            FileChange(
                batch_id,
                "",
                finished_at,
                finished_at,
                ip="" if assigned else None,
                flags=flags,
                triage_route=route,
                terminal_state=terminal,
                failed_stage=failed_stage,
                applied_events=decode_events(applied),
            )
        )
        result.setdefault(batch_id, []).append(
            replace(one, count=int(count), finished_at=finished_at)
        )
    return result
