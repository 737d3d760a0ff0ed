"""A batch's stage statuses and milestones, recomputed from counts: pure functions, no I/O.

The store keeps, per batch, how many files share each combination of progress columns (a
`FileSignature`); from the counts before and after a poll and the batch's current row,
`recompute` makes the new `batchStatus` row and the milestones the poll crossed
(`logged_before`: those the counts before it had crossed). The counts move only with file
rows that change, so applying a poll twice changes nothing.

How a file counts for a stage: signatures.py (`FileSignature.outcome`). A stage is
Complete when the batch is closed (`totalFiles` known), every announced file is
known and every known file is finished, skipped or failed for it. So a stage that finished
with failures shows Complete: its failures are counted in `failedFiles` of its
`stage_complete` row, in the `file_error` rows and in the batch's `failedFiles`, never by
holding the stage InProgress, so that one bad file cannot stall a batch's dashboard.
A cancelled file never resolves a stage: the stages a cancelled batch did not get through
stay InProgress (or Pending), and the batch's `status` is Cancelled, unless every file got
through anyway (a cancel that came too late), in which case it is Complete.

Every value of the `batchStatus` row is a function of the files' rows, so any order of the
same events gives the same row. The counts come from `batchStatus.fileCounts`, which the
store moves with each file row a poll changes (never a recount of the batch). The milestones
`recompute` logs are stamped with what the poll that crossed them knew: the store writes
them only for a batch whose files a previous version wrote (no resolutions kept); otherwise
every milestone comes from the files' resolutions by one rule (milestones.py), while the
stage runs (live_milestones.py) as when it completes.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, TypeVar

from services.tracker.poll_changes import (
    STAGE_COMPLETE,
    STAGE_PROGRESS,
    STAGE_START,
    BatchTouch,
    LogRow,
    sha256_of,
)
from services.tracker.signatures import FileSignature
from shared.pipeline import PIPELINE
from shared.status import Status

# The status words (shared/status.py), as the plain strings the columns hold.
PENDING: Final = Status.PENDING.value
IN_PROGRESS: Final = Status.IN_PROGRESS.value
COMPLETE: Final = Status.COMPLETE.value
CANCELLED: Final = Status.CANCELLED.value

_T = TypeVar("_T", int, datetime)


@dataclass(frozen=True)
class StageTally:
    known: int = 0
    entered: int = 0
    finished: int = 0
    skipped: int = 0
    failed: int = 0
    cancelled: int = 0
    # Files seen only by events after their upload: not counted in `known` (they may be
    # late files the batch rejects once its uploads are read), but they must resolve too.
    provisional: int = 0

    @property
    def resolved(self) -> int:
        """Files through the stage one way or another: what `stage_progress` counts."""
        return self.finished + self.skipped + self.failed


def tally(signatures: Iterable[FileSignature], position: int) -> StageTally:
    counts = dict.fromkeys(("finished", "skipped", "failed", "cancelled", "pending"), 0)
    known = entered = provisional = 0
    for sig in signatures:
        if sig.uploaded:
            known += sig.count
        else:
            provisional += sig.count
        counts[sig.outcome(position)] += sig.count
        entered += sig.count if sig.entered(position) else 0
    return StageTally(
        known,
        entered,
        counts["finished"],
        counts["skipped"],
        counts["failed"],
        counts["cancelled"],
        provisional,
    )


def stage_status(t: StageTally, total_files: int | None) -> str:
    if total_files is not None and t.known >= total_files and t.resolved == t.known + t.provisional:
        return COMPLETE
    return IN_PROGRESS if t.entered > 0 else PENDING


def overall_status(statuses: Mapping[str, str], cancelled: bool = False) -> str:
    """Pending, then the done value of the furthest stage that, with every earlier stage,
    is Complete; Complete when all are; Cancelled for a cancelled batch that is not."""
    if cancelled and any(statuses[s.status_column] != COMPLETE for s in PIPELINE):
        return CANCELLED
    status = PENDING
    for stage in PIPELINE:
        if statuses[stage.status_column] != COMPLETE:
            break
        status = stage.done_value
    return status


@dataclass(frozen=True)
class BatchStatusRow:
    """A `batchStatus` row."""

    batch_id: str
    statuses: tuple[tuple[str, str], ...]  # (column, value) in PIPELINE order
    status: str
    total_files: int | None
    known_files: int
    done_files: int
    skipped_files: int
    failed_files: int
    created_at: datetime | None
    updated_at: datetime | None
    closed_at: datetime | None
    completed_at: datetime | None
    cancelled_files: int = 0
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    # How many files of the batch have each signature (`encode_counts`): kept up to date from
    # each poll's file changes, so a poll never recounts the batch.
    file_counts: str | None = None
    # What tells a kept index of the batch's resolutions from a stale one (resolution_index.py).
    resolutions_digest: int | None = None

    @property
    def cancelled(self) -> bool:
        # A batch cancelled by hand in the old system has only its status to show it.
        return self.cancelled_at is not None or self.status == CANCELLED


@dataclass(frozen=True)
class LoggedMilestones:
    """What batchExecutionLog already holds for one stage of one batch."""

    started: bool = False
    completed: bool = False
    progress: int = 0  # highest processedFiles of its stage_progress rows


def logged_before(
    signatures: Iterable[FileSignature], total_files: int | None, interval: int
) -> dict[str, LoggedMilestones]:
    """The milestones a batch's counts before a poll had logged: the poll logs those its
    new counts add (so no query of batchExecutionLog, whose rows grow with the batch)."""
    sigs = list(signatures)
    logged: dict[str, LoggedMilestones] = {}
    for position, stage in enumerate(PIPELINE):
        t = tally(sigs, position)
        complete = stage_status(t, total_files) == COMPLETE
        logged[stage.name] = LoggedMilestones(
            started=t.entered > 0 or complete,
            completed=complete,
            progress=t.resolved // interval * interval,
        )
    return logged


def recompute(
    batch_id: str,
    existing: BatchStatusRow | None,
    touch: BatchTouch,
    signatures: Iterable[FileSignature],
    logged: Mapping[str, LoggedMilestones],
    progress_interval: int,
) -> tuple[BatchStatusRow, list[LogRow]]:
    """The batch's new row and the milestones to log, from its files' current counts."""
    sigs = list(signatures)
    # The first close decides the batch's size (poll_changes.py `BatchTouch.close`).
    first_close = existing is not None and existing.total_files is not None
    total = existing.total_files if existing and first_close else touch.total_files
    updated_at = latest(existing.updated_at if existing else None, touch.last_at)
    # Milestones are stamped with the batch's latest event time, not this poll's: a poll that
    # redelivers older events after a crash stamps what the original poll would have.
    at = updated_at or touch.last_at
    closed_at = existing.closed_at if existing and first_close else touch.closed_at
    cancelled_at, cancel_reason = _first_cancel(existing, touch)
    cancelled = cancelled_at is not None or (existing is not None and existing.cancelled)
    statuses: dict[str, str] = {}
    logs: list[LogRow] = []
    for position, stage in enumerate(PIPELINE):
        t = tally(sigs, position)
        status = statuses[stage.status_column] = stage_status(t, total)
        logs += _milestones(
            batch_id,
            stage.name,
            t,
            status,
            total,
            at,
            logged.get(stage.name, LoggedMilestones()),
            progress_interval,
        )
    status = overall_status(statuses, cancelled)
    completed_at = None
    if status == COMPLETE:
        # When the last file reached its terminal state (or the close came, if later): a
        # function of the rows, so the same whatever poll completed the batch.
        completed_at = latest(_latest(s.finished_at for s in sigs), closed_at) or at
    terminal_counts = dict.fromkeys(("done", "skipped", "failed", "cancelled"), 0)
    for sig in sigs:
        if sig.terminal_state in terminal_counts:
            terminal_counts[sig.terminal_state] += sig.count
    row = BatchStatusRow(
        batch_id=batch_id,
        statuses=tuple((s.status_column, statuses[s.status_column]) for s in PIPELINE),
        status=status,
        total_files=total,
        known_files=sum(sig.count for sig in sigs),
        done_files=terminal_counts["done"],
        skipped_files=terminal_counts["skipped"],
        failed_files=terminal_counts["failed"],
        created_at=earliest(existing.created_at if existing else None, touch.first_at),
        updated_at=updated_at,
        closed_at=closed_at,
        completed_at=completed_at,
        cancelled_files=terminal_counts["cancelled"],
        cancelled_at=cancelled_at,
        cancel_reason=cancel_reason,
    )
    return row, logs


def _milestones(
    batch_id: str,
    stage: str,
    t: StageTally,
    status: str,
    total: int | None,
    at: datetime,
    logged: LoggedMilestones,
    interval: int,
) -> list[LogRow]:
    base = LogRow(
        event_key="",
        batch_id=batch_id,
        stage=stage,
        event_type=STAGE_START,
        created_at=at,
        total_files=total,
        failed_files=t.failed,
        skipped_files=t.skipped,
    )
    rows: list[LogRow] = []
    if not logged.started and (t.entered > 0 or status == COMPLETE):
        rows.append(
            replace(
                base,
                event_key=sha256_of(batch_id, stage, STAGE_START),
                status=IN_PROGRESS,
                processed_files=0,  # the count at a start; progress rows carry the rest
            )
        )
    # One row per multiple of the interval, however many a poll crossed at once.
    first = (logged.progress // interval + 1) * interval
    for processed in range(first, t.resolved + 1, interval):
        rows.append(
            replace(
                base,
                event_key=sha256_of(batch_id, stage, STAGE_PROGRESS, processed),
                event_type=STAGE_PROGRESS,
                status=IN_PROGRESS,
                processed_files=processed,
            )
        )
    if not logged.completed and status == COMPLETE:
        rows.append(
            replace(
                base,
                event_key=sha256_of(batch_id, stage, STAGE_COMPLETE),
                event_type=STAGE_COMPLETE,
                status=COMPLETE,
                processed_files=t.resolved,
            )
        )
    return rows


def _first_cancel(
    existing: BatchStatusRow | None, touch: BatchTouch
) -> tuple[datetime | None, str | None]:
    """The earliest cancellation and its reason (the smaller reason on a tie: any order of
    the same cancellations gives the same answer)."""
    found = [
        (at, reason or "")
        for at, reason in (
            (existing.cancelled_at, existing.cancel_reason) if existing else (None, None),
            (touch.cancelled_at, touch.cancel_reason),
        )
        if at is not None
    ]
    if not found:
        return None, None
    at, reason = min(found)
    return at, reason


def _latest(times: Iterable[datetime | None]) -> datetime | None:
    return max((t for t in times if t is not None), default=None)


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two times, either of which may be unknown."""
    if a is None or b is None:
        return a if b is None else b
    return min(a, b)


def latest(a: _T | None, b: _T | None) -> _T | None:
    """The larger of two values, either of which may be unknown."""
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)
