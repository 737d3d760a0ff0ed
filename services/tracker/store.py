"""Load what a poll needs, and write what it changes, in one transaction with bulk,
idempotent statements. Every rule is in poll_plan.py; this module only reads and writes.

Per poll, in work proportional to the poll's events, not to its batches' sizes: a locking
read of the touched batches' `batchStatus` rows (inserted first only for a new batch), a
read of the poll's files' rows, one upsert of the rows that changed, insert-ignores of
`processing_logs`, `deadLetters` and `batchExecutionLog`, one upsert of `batchStatus`. Only
what needs every file of a batch reads them, once per change that can move it (poll_plan.py
`settle`). MySQL/MariaDB and SQLite differ only in upsert syntax; on MySQL the bulk
statements go to the driver precompiled (bulk_insert.py).
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tracker import poll_plan as plan
from services.tracker.batch_locks import lock_batches
from services.tracker.batch_status import BatchStatusRow
from services.tracker.bulk_insert import Params, execute_many, insert_ignore
from services.tracker.columns import (
    ATTEMPT,
    DEAD_LETTER,
    FILE_READ_COLUMNS,
    LOG,
    batch_params,
    file_change,
    file_params,
)
from services.tracker.live_milestones import LiveMilestones
from services.tracker.live_writes import (
    LIVE_TYPES,
    LiveWrites,
    carry,
    delete_replaced,
    plan_live,
    read_batch_files,
)
from services.tracker.milestones import absent_milestones
from services.tracker.poll_changes import (
    STAGE_PROGRESS,
    TRACKER_CONSUMER,
    FileChange,
    LogRow,
    PollChanges,
    file_key,
)
from services.tracker.signature_counts import counts_before
from services.tracker.tables import (
    batch_execution_log,
    dead_letters,
    file_distribution,
    processing_logs,
)
from services.tracker.upserts import batch_upsert, file_upsert, log_upsert


async def apply_changes(
    conn: AsyncConnection,
    changes: PollChanges,
    *,
    progress_interval: int,
    live: LiveMilestones | None = None,
) -> None:
    """Apply one poll's changes inside the caller's transaction: load, plan, save. `live`
    keeps the batches' resolutions between polls (without it, a running batch's files are
    read in each poll)."""
    live = live if live is not None else LiveMilestones()
    mysql = conn.dialect.name in ("mysql", "mariadb")
    batch_ids = sorted(changes.batches)
    existing = await lock_batches(conn, changes, batch_ids, mysql)
    plan.reject_closes(changes, existing)
    before = await counts_before(conn, existing)
    counts = {b: dict(c) for b, c in before.items()}
    old_rows = await _read_files(conn, changes) if changes.files else {}
    full = plan.decide_uploads(changes, existing, counts, old_rows)
    dropped = plan.provisional(await _batch_rows(conn, full), changes) if full else []
    await _delete_files(conn, dropped)
    gone = plan.forget(dropped, counts)
    files, touched = plan.plan_files(changes, old_rows, counts, plan.cancels(changes, existing))
    digests = carry(live, existing, old_rows, dropped, files)
    for batch_id, moved in gone.items():
        mine = touched.setdefault(batch_id, plan.Touched())
        mine.resolutions |= moved.resolutions
        mine.finishes = True
    await execute_many(
        conn,
        "upsert fileDistribution",
        partial(file_upsert, mysql),
        [file_params(f) for f in files],
    )
    moves = plan.cancel_moves(changes, existing, counts)
    await _cancel_unfinished_files(conn, moves)
    for batch_id, _ in moves:
        touched.setdefault(batch_id, plan.Touched()).finishes = True
    await insert_ignore(
        conn, processing_logs, [ATTEMPT.params(a) for a in changes.attempts.values()], mysql
    )
    await _replace_own_letters(conn, changes)
    await insert_ignore(
        conn, dead_letters, [DEAD_LETTER.params(d) for d in changes.dead_letters.values()], mysql
    )
    await _stamp_replays(conn, changes)
    await insert_ignore(
        conn, batch_execution_log, [LOG.params(r) for r in changes.logs.values()], mysql
    )
    rows: list[BatchStatusRow] = []
    running = LiveWrites()
    provisional: list[LogRow] = []
    final: list[LogRow] = []
    stale: list[Params] = []
    absent: list[str] = []  # eventKeys of final milestones the rule no longer gives
    for batch_id in batch_ids:
        batch = plan.plan_batch(
            existing[batch_id],
            changes,
            before[batch_id],
            counts[batch_id],
            touched.get(batch_id, plan.Touched()),
            progress_interval,
        )
        row, finals, resolved = batch.row, list[LogRow](), dict[str, int]()
        everyone = await read_batch_files(conn, batch_id) if batch.needs_files else None
        if everyone is not None:
            row, finals, resolved = plan.settle(batch, everyone, progress_interval)
        digest = await plan_live(
            conn, live, batch, row, digests[batch_id], everyone, progress_interval, running
        )
        rows.append(replace(row, resolutions_digest=digest))
        final_keys = {r.event_key for r in finals}
        provisional += [
            r
            for r in batch.provisional
            if r.event_key not in final_keys
            and not (batch_id in running.batches and r.event_type in LIVE_TYPES)
        ]
        final += finals
        if resolved:
            absent += absent_milestones(batch_id, batch.stages, finals)
        stale += [
            {"batch": batch_id, "stage": stage, "above": n // progress_interval * progress_interval}
            for stage, n in resolved.items()
        ]
    params = [batch_params(r) for r in rows]
    await execute_many(conn, "upsert batchStatus", partial(batch_upsert, mysql), params)
    # Provisional milestones (of a batch a previous version wrote) never overwrite; live
    # and final ones do.
    await insert_ignore(conn, batch_execution_log, [LOG.params(r) for r in provisional], mysql)
    await delete_replaced(conn, running)
    if absent:
        t = batch_execution_log
        await conn.execute(delete(t).where(t.c.eventKey.in_(absent)))
    await execute_many(
        conn,
        "upsert batchExecutionLog",
        partial(log_upsert, mysql),
        [LOG.params(r) for r in (*running.rows, *final)],
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


async def _replace_own_letters(conn: AsyncConnection, changes: PollChanges) -> None:
    """A stage's dead letter about a record replaces the tracker's own reading of it, so the
    row does not depend on which of the two was applied first."""
    keys = [
        {"key": d.letter_key}
        for d in changes.dead_letters.values()
        if d.consumer != TRACKER_CONSUMER
    ]
    if keys:
        t = dead_letters
        await conn.execute(
            delete(t).where(t.c.letterKey == bindparam("key"), t.c.consumer == TRACKER_CONSUMER),
            keys,
        )


async def _stamp_replays(conn: AsyncConnection, changes: PollChanges) -> None:
    """`replayedAt` of each letter `cofi retry` replayed: the first replay's time, kept."""
    if changes.replays:
        t = dead_letters
        await conn.execute(
            update(t)
            .where(t.c.letterKey == bindparam("key"), t.c.replayedAt.is_(None))
            .values(replayedAt=bindparam("at")),
            [{"key": k, "at": at} for k, at in changes.replays.items()],
        )


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


async def _batch_rows(conn: AsyncConnection, batch_ids: set[str]) -> list[FileChange]:
    """Every row of the batches (only for a full batch that still has provisional files)."""
    t = file_distribution
    query = select(*(t.c[name] for name in FILE_READ_COLUMNS)).where(
        t.c.batchId.in_(sorted(batch_ids))
    )
    return [file_change(row) for row in await conn.execute(query)]


async def _delete_files(conn: AsyncConnection, rows: Sequence[FileChange]) -> None:
    """Delete provisional files a full batch rejects, with their attempts and log rows: the
    tables then hold what they would had the upload's rejection been read first."""
    if not rows:
        return
    keys = [{"batch": r.batch_id, "key": file_key(r.file_name), "name": r.file_name} for r in rows]
    f, p, log = file_distribution, processing_logs, batch_execution_log
    await conn.execute(
        delete(f).where(f.c.batchId == bindparam("batch"), f.c.fileKey == bindparam("key")), keys
    )
    await conn.execute(
        delete(p).where(p.c.batch_id == bindparam("batch"), p.c.call_id == bindparam("name")),
        keys,
    )
    await conn.execute(
        delete(log).where(log.c.batchId == bindparam("batch"), log.c.fileName == bindparam("name")),
        keys,
    )


async def _cancel_unfinished_files(
    conn: AsyncConnection, moves: Sequence[tuple[str, datetime]]
) -> None:
    """End the batches' unfinished files `cancelled` at the cancel's time (poll_plan.py
    `cancel_moves`); a file cancelled later than that takes the earlier time."""
    if not moves:
        return
    t = file_distribution
    unfinished = or_(
        t.c.terminalState.is_(None),
        and_(t.c.terminalState == "cancelled", t.c.finishedAt > bindparam("at")),
    )
    await conn.execute(
        update(t)
        .where(t.c.batchId == bindparam("batch"), unfinished)
        .values(terminalState="cancelled", finishedAt=bindparam("at")),
        [{"batch": b, "at": at} for b, at in moves],
    )
