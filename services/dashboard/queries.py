"""The dashboard queries: read-only SQL over the tracker's tables and views (migration 0004).

One set of queries serves the progress page, `cofi status` and the Grafana dashboard
(`cli/grafana_dashboard.py` builds its panels from `DASHBOARD_QUERIES`), so the three never
disagree. Parameters are `:batch` (a batch id) and `:limit`; the SQL runs on MySQL/MariaDB and
on the embedded SQLite.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.dashboard.progress import (
    AttemptError,
    BatchProgress,
    BatchRow,
    FileFailure,
    HostStage,
    HostThroughput,
    StageActivity,
    StageCounts,
    batch_progress,
    host_throughput,
)
from shared.pipeline import PIPELINE, StageSpec
from shared.stages import STAGES
from shared.status import Status

if TYPE_CHECKING:
    # The details modules import this one (as_datetime): imported where they are used.
    from services.dashboard.file_journey import FileJourney, FileMatch
    from services.dashboard.timeline import FailureReason, Timeline

_BATCH_COLUMNS = (
    "batchId, status, totalFiles, knownFiles, doneFiles, skippedFiles, failedFiles, "
    "cancelledFiles, createdAt, updatedAt, completedAt"
)

BATCHES = f"SELECT {_BATCH_COLUMNS} FROM batchStatus ORDER BY updatedAt DESC, batchId LIMIT :limit"
BATCH_IDS = "SELECT batchId FROM batchStatus ORDER BY updatedAt DESC, batchId LIMIT :limit"
BATCH = f"SELECT {_BATCH_COLUMNS} FROM batchStatus WHERE batchId = :batch"
STAGE_PROGRESS = (
    "SELECT stage, stageStatus, totalFiles, finishedFiles, skippedFiles, failedFiles, "
    "cancelledFiles, pendingFiles, percentDone "
    "FROM v_batch_stage_progress WHERE batchId = :batch ORDER BY stageOrder"
)
STAGE_ERRORS = (
    "SELECT stage_name, attempts, failedAttempts, files, failedFiles "
    "FROM v_stage_error_rate WHERE batch_id = :batch"
)
STAGE_FILES_PER_MINUTE = (
    "SELECT minute, stage_name, files FROM v_stage_files_per_minute "
    "WHERE batch_id = :batch ORDER BY minute, stage_name"
)
HOST_STAGES = (
    "SELECT host, stage_name, COUNT(*) AS attempts, "
    "SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END) AS files, "
    "SUM(CASE WHEN status = 'failure' THEN 1 ELSE 0 END) AS failedAttempts, "
    "MIN(startedAt) AS firstAt, MAX(startedAt) AS lastAt "
    "FROM processing_logs WHERE batch_id = :batch GROUP BY host, stage_name"
)
FAILED_FILES = (
    "SELECT file, failedStage, ip, failedError, failedAt FROM fileDistribution "
    "WHERE batchId = :batch AND terminalState = 'failed' ORDER BY failedAt DESC, id LIMIT :limit"
)
# Records of the batch that no stage took: rejected uploads (after the batch closed with its
# file_count files) and poison messages that still named the batch.
DEAD_LETTERS = (
    "SELECT fileName, stage, sourceTopic, error, createdAt FROM deadLetters "
    "WHERE batchId = :batch ORDER BY createdAt DESC, id LIMIT :limit"
)
ATTEMPT_ERRORS = (
    "SELECT call_id, stage_name, host, attempt, errorKind, error_message, startedAt "
    "FROM processing_logs WHERE batch_id = :batch AND status = 'failure' "
    "ORDER BY startedAt DESC, id LIMIT :limit"
)


def _finished_files(stage: StageSpec) -> str:
    """How many of a batch's files show the stage finished: its done flag, or its decision."""
    if stage.flag_column is not None:
        return f"SUM({stage.flag_column})"
    return f"SUM(CASE WHEN {stage.decision_column} IS NOT NULL THEN 1 ELSE 0 END)"


# A batch's outcome from its files' own columns (what `cofi demo`, the end-to-end and crash
# tests and the benchmark wait on; services/dashboard/summary.py): one column per stage.
SUMMARY_BATCH = (
    f"SELECT status, totalFiles, {', '.join(s.status_column for s in PIPELINE)} "
    "FROM batchStatus WHERE batchId = :batch"
)
SUMMARY_FILES = (
    "SELECT COUNT(*) AS files, "
    + ", ".join(f"{_finished_files(s)} AS {s.name}" for s in PIPELINE)
    + " FROM fileDistribution WHERE batchId = :batch"
)
SUMMARY_TERMINAL = (
    "SELECT terminalState AS state, COUNT(*) AS files FROM fileDistribution "
    "WHERE batchId = :batch GROUP BY terminalState"
)
SUMMARY_FAILED = (
    "SELECT failedStage AS stage, COUNT(*) AS files FROM fileDistribution "
    "WHERE batchId = :batch AND terminalState = 'failed' GROUP BY failedStage"
)

DASHBOARD_QUERIES: Mapping[str, str] = {
    "batches": BATCHES,
    "batch_ids": BATCH_IDS,
    "batch": BATCH,
    "stage_progress": STAGE_PROGRESS,
    "stage_errors": STAGE_ERRORS,
    "stage_files_per_minute": STAGE_FILES_PER_MINUTE,
    "host_stages": HOST_STAGES,
    "failed_files": FAILED_FILES,
    "attempt_errors": ATTEMPT_ERRORS,
    "summary_batch": SUMMARY_BATCH,
    "summary_files": SUMMARY_FILES,
    "summary_terminal": SUMMARY_TERMINAL,
    "summary_failed": SUMMARY_FAILED,
}


def as_datetime(value: Any) -> datetime | None:
    """SQLite hands back text for times (and for a view's computed minute); MySQL datetimes."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


async def _rows(conn: AsyncConnection, sql: str, **params: Any) -> Sequence[Any]:
    return (await conn.execute(text(sql), params)).mappings().all()


def _batch_row(r: Any) -> BatchRow:
    return BatchRow(
        batch_id=r["batchId"],
        status=r["status"],
        total_files=r["totalFiles"],
        known_files=r["knownFiles"] or 0,
        done=r["doneFiles"] or 0,
        skipped=r["skippedFiles"] or 0,
        failed=r["failedFiles"] or 0,
        cancelled=r["cancelledFiles"] or 0,
        created_at=as_datetime(r["createdAt"]),
        updated_at=as_datetime(r["updatedAt"]),
        completed_at=as_datetime(r["completedAt"]),
    )


def _host_stage(r: Any) -> HostStage:
    return HostStage(
        host=r["host"],
        stage=r["stage_name"],
        attempts=int(r["attempts"] or 0),
        files=int(r["files"] or 0),
        failed_attempts=int(r["failedAttempts"] or 0),
        first_at=as_datetime(r["firstAt"]),
        last_at=as_datetime(r["lastAt"]),
    )


class BatchPage(BaseModel):
    """Everything the page shows about one batch, read in one snapshot."""

    progress: BatchProgress
    hosts: list[HostThroughput]
    failed_files: list[FileFailure]
    attempt_errors: list[AttemptError]
    dead_letters: list[FileFailure] = []


class DashboardReader:
    """Reads the dashboards' view of the tables; never writes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def batches(self, limit: int = 20) -> list[BatchRow]:
        async with self.engine.connect() as conn:
            return [_batch_row(r) for r in await _rows(conn, BATCHES, limit=limit)]

    async def progress(self, batch_id: str, now: datetime) -> BatchProgress | None:
        """The batch's per-stage progress at `now` (naive UTC), or None for an unknown batch."""
        async with self.engine.connect() as conn:
            found = await _progress(conn, batch_id, now)
        return found[0] if found else None

    async def page(self, batch_id: str, now: datetime, limit: int = 50) -> BatchPage | None:
        async with self.engine.connect() as conn:
            found = await _progress(conn, batch_id, now)
            if found is None:
                return None
            progress, hosts = found
            failed = await _rows(conn, FAILED_FILES, batch=batch_id, limit=limit)
            attempts = await _rows(conn, ATTEMPT_ERRORS, batch=batch_id, limit=limit)
            letters = await _rows(conn, DEAD_LETTERS, batch=batch_id, limit=limit)
        return BatchPage(
            progress=progress,
            hosts=host_throughput(hosts),
            failed_files=[
                FileFailure(
                    file=r["file"],
                    stage=r["failedStage"],
                    host=r["ip"],
                    error=r["failedError"],
                    at=as_datetime(r["failedAt"]),
                )
                for r in failed
            ],
            attempt_errors=[
                AttemptError(
                    file=r["call_id"],
                    stage=r["stage_name"],
                    host=r["host"],
                    attempt=r["attempt"],
                    kind=r["errorKind"],
                    error=r["error_message"],
                    at=as_datetime(r["startedAt"]),
                )
                for r in attempts
            ],
            dead_letters=[
                FileFailure(
                    file=r["fileName"] or "",
                    stage=r["stage"],
                    host=r["sourceTopic"],
                    error=r["error"],
                    at=as_datetime(r["createdAt"]),
                )
                for r in letters
            ],
        )

    async def details(self, batch_id: str) -> "tuple[Timeline, list[FailureReason]]":
        """The batch's files per minute (per stage, per host) and its failures by reason."""
        from services.dashboard.timeline import failure_reasons, timeline

        async with self.engine.connect() as conn:
            return await timeline(conn, batch_id), await failure_reasons(conn, batch_id)

    async def file(self, batch_id: str, file: str, redact: frozenset[str]) -> "FileJourney | None":
        from services.dashboard.file_journey import file_journey

        async with self.engine.connect() as conn:
            return await file_journey(conn, batch_id, file, redact)

    async def search(self, query: str, limit: int = 50) -> "list[FileMatch]":
        from services.dashboard.file_journey import search_files

        async with self.engine.connect() as conn:
            return await search_files(conn, query, limit)


async def _progress(
    conn: AsyncConnection, batch_id: str, now: datetime
) -> tuple[BatchProgress, list[HostStage]] | None:
    found = await _rows(conn, BATCH, batch=batch_id)
    if not found:
        return None
    progress = await _rows(conn, STAGE_PROGRESS, batch=batch_id)
    errors = {r["stage_name"]: r for r in await _rows(conn, STAGE_ERRORS, batch=batch_id)}
    minutes = await _rows(conn, STAGE_FILES_PER_MINUTE, batch=batch_id)
    hosts = [_host_stage(r) for r in await _rows(conn, HOST_STAGES, batch=batch_id)]
    counts = []
    for r in progress:
        if r["stage"] not in STAGES:
            continue  # the distributor's host assignment is not a stage
        err = errors.get(r["stage"], {})
        counts.append(
            StageCounts(
                stage=r["stage"],
                status=r["stageStatus"] or Status.PENDING,
                finished=int(r["finishedFiles"] or 0),
                skipped=int(r["skippedFiles"] or 0),
                failed=int(r["failedFiles"] or 0),
                cancelled=int(r["cancelledFiles"] or 0),
                pending=int(r["pendingFiles"] or 0),
                failed_here=int(err.get("failedFiles") or 0),
                attempts=int(err.get("attempts") or 0),
                failed_attempts=int(err.get("failedAttempts") or 0),
            )
        )
    activity: dict[str, StageActivity] = {}
    for h in hosts:
        a = activity.setdefault(h.stage, StageActivity())
        if h.first_at is not None:
            a.first_at = min(a.first_at or h.first_at, h.first_at)
        if h.last_at is not None:
            a.last_at = max(a.last_at or h.last_at, h.last_at)
    for r in minutes:
        minute = as_datetime(r["minute"])
        if minute is not None:
            activity.setdefault(r["stage_name"], StageActivity()).minutes.append(
                (minute, int(r["files"] or 0))
            )
    return batch_progress(_batch_row(found[0]), counts, activity, now), hosts
