"""Write a poll's changes in one transaction with bulk, idempotent statements.

Per poll, whatever its size: a locking read of the touched batches' `batchStatus` rows
(inserted first only for a new batch), one upsert of `fileDistribution` (a row per file,
merged in Python first), insert-ignores of `processing_logs`, `deadLetters` and
`batchExecutionLog`, one grouped SELECT of the touched batches' files, one upsert of
`batchStatus`. Every statement is idempotent (flags only set, set-once values kept, counts
recomputed), so a replayed poll writes nothing new. MySQL/MariaDB and SQLite differ only in
upsert syntax; on MySQL the bulk statements go to the driver precompiled (`_execute_many`).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from services.tracker.batch_status import (
    BatchStatusRow,
    FileSignature,
    LoggedMilestones,
    recompute,
)
from services.tracker.rows import (
    STAGE_COMPLETE,
    STAGE_PROGRESS,
    STAGE_START,
    TERMINAL_RANK,
    AttemptRow,
    DeadLetterRow,
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
from shared.pipeline import FLAG_COLUMNS, PIPELINE

Params = dict[str, Any]


def is_mysql(url: str) -> bool:
    return make_url(url).get_backend_name() in ("mysql", "mariadb")


def make_engine(url: str) -> AsyncEngine:
    if is_mysql(url):
        # READ COMMITTED: the counts read after taking the batches' row locks see every
        # commit of another tracker instance (REPEATABLE READ would show a stale snapshot).
        return create_async_engine(
            url, isolation_level="READ COMMITTED", pool_pre_ping=True, pool_recycle=1800
        )
    return create_async_engine(url, connect_args={"timeout": 30})


async def apply_changes(
    conn: AsyncConnection, changes: PollChanges, *, progress_interval: int
) -> None:
    """Apply one poll's changes inside the caller's transaction."""
    mysql = conn.dialect.name in ("mysql", "mariadb")
    batch_ids = sorted(changes.batches)
    existing = await _lock_batches(conn, changes, batch_ids, mysql)
    if changes.files:
        files = [_file_params(c) for c in changes.files.values()]
        await _execute_many(conn, "upsert fileDistribution", partial(_file_upsert, mysql), files)
    await _cancel_unfinished_files(conn, changes, existing)
    await _insert_ignore(
        conn, processing_logs, [_attempt_params(a) for a in changes.attempts.values()], mysql
    )
    await _insert_ignore(
        conn, dead_letters, [_letter_params(d) for d in changes.dead_letters.values()], mysql
    )
    await _insert_ignore(
        conn, batch_execution_log, [_log_params(r) for r in changes.logs.values()], mysql
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
    params = [_batch_params(r) for r in rows]
    await _execute_many(conn, "upsert batchStatus", partial(_batch_upsert, mysql), params)
    await _insert_ignore(conn, batch_execution_log, [_log_params(r) for r in milestones], mysql)


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
        await _insert_ignore(conn, batch_status, _new_batch_rows(changes, batch_ids), mysql)
        return await _select_for_update(conn, batch_ids)
    existing = await _select_for_update(conn, batch_ids)
    missing = [b for b in batch_ids if b not in existing]
    if missing:
        await _insert_ignore(conn, batch_status, _new_batch_rows(changes, missing), mysql)
        existing.update(await _select_for_update(conn, missing))
    return existing


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
    return {row.batchId: _batch_row(row._mapping) for row in await conn.execute(query)}


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


async def _insert_ignore(
    conn: AsyncConnection, table: Table, rows: Sequence[Params], mysql: bool
) -> None:
    if not rows:
        return

    def statement() -> Insert:
        if mysql:
            return insert(table).prefix_with("IGNORE")
        return sqlite_insert(table).on_conflict_do_nothing()

    await _execute_many(conn, f"insert ignore {table.name}", statement, rows)


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled once for a dialect, and how to put a row's values in its order."""

    sql: str
    values: Callable[[Params], tuple[Any, ...]]


# Per dialect (one per engine) and statement: compiled SQL, or None where SQLAlchemy must run it.
_prepared: "WeakKeyDictionary[Dialect, dict[tuple[str, tuple[str, ...]], _Prepared | None]]" = (
    WeakKeyDictionary()
)


async def _execute_many(
    conn: AsyncConnection, name: str, statement: Callable[[], Insert], rows: Sequence[Params]
) -> None:
    """`conn.execute(statement(), rows)`, without SQLAlchemy's work per row.

    With MySQL's positional parameters and no type that converts a value on its way in (every
    column here), SQLAlchemy hands the driver the compiled SQL and each row's values in order;
    so do we, from a statement compiled once, and skip building, caching and walking its
    parameters for every row. The driver then sends the rows in a few multi-row statements,
    as it did. Anything else (SQLite's named parameters) goes through SQLAlchemy.
    """
    if not rows:
        return
    dialect = conn.dialect
    key = (name, tuple(rows[0]))
    cache = _prepared.setdefault(dialect, {})
    if key not in cache:
        cache[key] = _prepare(statement(), dialect, key[1])
    prepared = cache[key]
    if prepared is None:
        await conn.execute(statement(), list(rows))
    else:
        await conn.exec_driver_sql(prepared.sql, [prepared.values(row) for row in rows])


def _prepare(statement: Insert, dialect: Dialect, keys: tuple[str, ...]) -> _Prepared | None:
    if dialect.paramstyle != "format" or len(keys) < 2:
        return None
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    names = compiled.positiontup or []
    binds = [compiled.binds[name] for name in names]
    if set(names) != set(keys) or any(
        b.type.dialect_impl(dialect).bind_processor(dialect) is not None for b in binds
    ):
        return None
    return _Prepared(compiled.string, itemgetter(*names))


# --- fileDistribution -------------------------------------------------------------------


def _file_upsert(mysql: bool) -> Insert:
    """INSERT ... ON DUPLICATE KEY UPDATE (MySQL) / ON CONFLICT DO UPDATE (SQLite), the same
    merge as `FileChange.merge`.

    MySQL evaluates the assignments left to right and a later one sees the columns already
    assigned, so a column is always assigned after every column whose old value it reads
    (finishedAt before terminalState, failedStage before failedAt, ...). SQLite reads old
    values throughout, so the same order is right for both.
    """
    t = file_distribution
    if mysql:
        my = mysql_insert(t)
        return my.on_duplicate_key_update(_file_assignments(my.inserted))
    lite = sqlite_insert(t)
    return lite.on_conflict_do_update(
        index_elements=[t.c.batchId, t.c.fileKey], set_=dict(_file_assignments(lite.excluded))
    )


def _file_assignments(new: Any) -> list[tuple[str, ColumnElement[Any]]]:
    old = file_distribution.c
    one: ColumnElement[Any] = literal_column("1")
    zero: ColumnElement[Any] = literal_column("0")

    def set_once(name: str) -> ColumnElement[Any]:
        return func.coalesce(old[name], new[name])

    def earliest(name: str) -> ColumnElement[Any]:
        return case(
            (old[name].is_(None), new[name]), (new[name] < old[name], new[name]), else_=old[name]
        )

    def latest(name: str) -> ColumnElement[Any]:
        return case(
            (old[name].is_(None), new[name]), (new[name] > old[name], new[name]), else_=old[name]
        )

    new_terminal_wins = _rank(new["terminalState"]) > _rank(old.terminalState)
    same_terminal = and_(
        new["terminalState"].is_not(None), new["terminalState"] == old.terminalState
    )
    newer_failure = and_(
        new["failedAt"].is_not(None), or_(old.failedAt.is_(None), new["failedAt"] > old.failedAt)
    )
    first_triage = and_(old.triageRoute.is_(None), new["triageRoute"].is_not(None))

    def when(condition: ColumnElement[bool], name: str) -> ColumnElement[Any]:
        return case((condition, new[name]), else_=old[name])

    return [
        (
            "finishedAt",
            case(
                (new_terminal_wins, new["finishedAt"]),
                (same_terminal, earliest("finishedAt")),
                else_=old.finishedAt,
            ),
        ),
        ("terminalState", when(new_terminal_wins, "terminalState")),
        ("failedStage", when(newer_failure, "failedStage")),
        ("failedError", when(newer_failure, "failedError")),
        ("failedAt", when(newer_failure, "failedAt")),
        ("triageRule", when(first_triage, "triageRule")),
        ("triageReason", when(first_triage, "triageReason")),
        ("triageRoute", set_once("triageRoute")),
        ("audioUri", set_once("audioUri")),
        ("ip", set_once("ip")),
        *(
            (name, case((new[name] == one, one), else_=func.coalesce(old[name], zero)))
            for name in FLAG_COLUMNS
        ),
        ("createdAt", earliest("createdAt")),
        ("updatedAt", latest("updatedAt")),
    ]


def _rank(state: ColumnElement[Any]) -> ColumnElement[int]:
    # Constants inline, not bound: MySQL's executemany rewrite cannot bind in the UPDATE part.
    return case(
        *(
            (state == literal_column(f"'{name}'"), literal_column(str(rank)))
            for name, rank in TERMINAL_RANK.items()
        ),
        else_=literal_column("0"),
    )


def _file_params(c: FileChange) -> Params:
    params: Params = {
        "batchId": c.batch_id,
        "file": c.file_name,
        "fileKey": file_key(c.file_name),
        "audioUri": c.audio_uri,
        "ip": c.ip,
        "terminalState": c.terminal_state,
        "finishedAt": c.finished_at,
        "failedStage": c.failed_stage,
        "failedError": c.failed_error,
        "failedAt": c.failed_at,
        "triageRoute": c.triage_route,
        "triageRule": c.triage_rule,
        "triageReason": c.triage_reason,
        "createdAt": c.created_at,
        "updatedAt": c.updated_at,
    }
    for name in FLAG_COLUMNS:
        params[name] = 1 if name in c.flags else 0
    return params


# --- batchStatus ------------------------------------------------------------------------


def _batch_upsert(mysql: bool) -> Insert:
    # Every value was computed under the batch's row lock: the update simply overwrites.
    columns = [c.name for c in batch_status.c if c.name not in ("id", "batchId")]
    if mysql:
        my = mysql_insert(batch_status)
        return my.on_duplicate_key_update([(name, my.inserted[name]) for name in columns])
    lite = sqlite_insert(batch_status)
    return lite.on_conflict_do_update(
        index_elements=[batch_status.c.batchId],
        set_={name: lite.excluded[name] for name in columns},
    )


def _batch_params(r: BatchStatusRow) -> Params:
    return {
        "batchId": r.batch_id,
        **dict(r.statuses),
        "status": r.status,
        "totalFiles": r.total_files,
        "knownFiles": r.known_files,
        "doneFiles": r.done_files,
        "skippedFiles": r.skipped_files,
        "failedFiles": r.failed_files,
        "createdAt": r.created_at,
        "updatedAt": r.updated_at,
        "closedAt": r.closed_at,
        "completedAt": r.completed_at,
        "cancelledFiles": r.cancelled_files,
        "cancelledAt": r.cancelled_at,
        "cancelReason": r.cancel_reason,
    }


def _batch_row(m: RowMapping) -> BatchStatusRow:
    return BatchStatusRow(
        batch_id=m["batchId"],
        statuses=tuple((s.status_column, m[s.status_column] or "Pending") for s in PIPELINE),
        status=m["status"] or "Pending",
        total_files=m["totalFiles"],
        known_files=m["knownFiles"] or 0,
        done_files=m["doneFiles"] or 0,
        skipped_files=m["skippedFiles"] or 0,
        failed_files=m["failedFiles"] or 0,
        created_at=m["createdAt"],
        updated_at=m["updatedAt"],
        closed_at=m["closedAt"],
        completed_at=m["completedAt"],
        cancelled_files=m["cancelledFiles"] or 0,
        cancelled_at=m["cancelledAt"],
        cancel_reason=m["cancelReason"],
    )


# --- log tables -------------------------------------------------------------------------


def _attempt_params(a: AttemptRow) -> Params:
    return {
        "attemptKey": a.attempt_key,
        "call_id": a.call_id,
        "batch_id": a.batch_id,
        "stage_name": a.stage_name,
        "status": a.status,
        "error_message": a.error_message,
        "input_payload": a.input_payload,
        "output_payload": a.output_payload,
        "attempt": a.attempt,
        "host": a.host,
        "errorKind": a.error_kind,
        "startedAt": a.started_at,
        "durationMs": a.duration_ms,
    }


def _log_params(r: LogRow) -> Params:
    return {
        "eventKey": r.event_key,
        "batchId": r.batch_id,
        "stage": r.stage,
        "eventType": r.event_type,
        "fileName": r.file_name,
        "status": r.status,
        "totalFiles": r.total_files,
        "processedFiles": r.processed_files,
        "failedFiles": r.failed_files,
        "skippedFiles": r.skipped_files,
        "createdAt": r.created_at,
    }


def _letter_params(d: DeadLetterRow) -> Params:
    return {
        "letterKey": d.letter_key,
        "sourceTopic": d.source_topic,
        "sourcePartition": d.source_partition,
        "sourceOffset": d.source_offset,
        "stage": d.stage,
        "consumer": d.consumer,
        "error": d.error,
        "batchId": d.batch_id,
        "fileName": d.file_name,
        "keyB64": d.key_b64,
        "valueB64": d.value_b64,
        "createdAt": d.created_at,
    }
