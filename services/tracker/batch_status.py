"""A batch's stage statuses and milestones, recomputed from counts: pure functions, no I/O.

The store keeps, per batch, how many files share each combination of progress columns (a
`FileSignature`); from the counts before and after a poll and the batch's current row,
`recompute` makes the new `batchStatus` row and the milestones the poll crossed
(`logged_before`: those the counts before it had crossed). The counts move only with file
rows that change, so applying a poll twice changes nothing.

How a file counts for a stage (`outcome`):
- finished: it finished the stage or any later one;
- skipped: triage routed it out before the stage (any stage after triage);
- failed: its terminal state is failed at or before the stage;
- cancelled: its batch was cancelled before the file got through the stage;
- pending: none of these yet; it has *entered* the stage if it finished the stage before.
A stage is Complete when the batch is closed (`totalFiles` known), every announced file is
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
`recompute` logs are provisional: their `createdAt`, `totalFiles`, `failedFiles` and
`skippedFiles` are what the poll that crossed them knew. When a stage completes, the store
rewrites them from the events alone (milestones.py), so the final rows do not depend on the
order of consumption.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Final, NamedTuple, TypeVar

from services.tracker import file_events
from services.tracker.rows import (
    STAGE_COMPLETE,
    STAGE_PROGRESS,
    STAGE_START,
    BatchTouch,
    FileChange,
    LogRow,
    sha256_of,
)
from shared.pipeline import PIPELINE, TRIAGE, index

PENDING: Final = "Pending"
IN_PROGRESS: Final = "InProgress"
COMPLETE: Final = "Complete"
CANCELLED: Final = "Cancelled"

_T = TypeVar("_T", int, datetime)

# Stage positions are shared.pipeline's: "distribute" is 0, the last stage len(PIPELINE) - 1.
LAST_INDEX: Final = len(PIPELINE) - 1
NOTHING: Final = -1  # the position of a file that has not been through any stage


@dataclass(frozen=True)
class FileSignature:
    """A combination of a file's progress columns, and how many files of the batch have it."""

    count: int
    # The stages its columns show it went through: a done flag set, or a decision made (the
    # stage's `flag_column` / `decision_column` in shared/pipeline.py).
    finished: frozenset[str] = frozenset()
    triage_route: str | None = None
    terminal_state: str | None = None
    failed_stage: str | None = None
    finished_at: datetime | None = None  # the latest `finishedAt` of these files
    # Every event of the file's route applied (file_events.py): only then does its end
    # resolve the last stage, so the batch is not Complete with events of it unread.
    ended: bool = True

    @cached_property  # asked for every stage of every signature on each poll
    def reached(self) -> int:
        """Position of the furthest stage whose own event is applied."""
        return max((index(stage) for stage in self.finished), default=NOTHING)

    def outcome(self, position: int) -> str:
        """ "finished", "skipped", "failed", "cancelled" or "pending" for the stage at
        `position`."""
        found = self._outcome(position)
        if position == LAST_INDEX and found != "cancelled" and not self.ended:
            return "pending"
        return found

    def _outcome(self, position: int) -> str:
        # A stage counts finished by its own event, never by a later one: that later event
        # may have been read before this one, which is still on another partition.
        if PIPELINE[position].name in self.finished:
            return "finished"
        if self.triage_route == "skip" and position > index(TRIAGE):
            return "skipped"
        if self.terminal_state == "failed" and self._failed_index() <= position:
            return "failed"
        if self.terminal_state == "cancelled":
            return "cancelled"
        return "pending"

    def entered(self, position: int) -> bool:
        outcome = self.outcome(position)
        if outcome == "finished":
            return True
        if outcome == "failed":
            return self._failed_index() == position
        return outcome in ("pending", "cancelled") and self.reached >= position - 1

    def _failed_index(self) -> int:
        # A failure that names no stage counts from the first one.
        return index(self.failed_stage) if self.failed_stage else 0


def file_signature(c: FileChange) -> FileSignature:
    """A file's row as the one file of its signature: the stages whose events are applied,
    triage route, terminal state, failed stage, and whether its end is settled."""
    if c.applied_events is not None:
        finished, ended = file_events.progress(c.applied_events, c.terminal_state, c.failed_stage)
        return FileSignature(
            1, finished, c.triage_route, c.terminal_state, c.failed_stage, None, ended
        )
    return FileSignature(
        1,
        legacy_finished(c.flags, c.ip is not None, c.triage_route is not None, c.terminal_state),
        c.triage_route,
        c.terminal_state,
        c.failed_stage,
    )


@lru_cache(maxsize=1024)
def legacy_finished(
    flags: frozenset[str], host_assigned: bool, triaged: bool, terminal: str | None
) -> frozenset[str]:
    """A row written before the tracker kept its events: the stages its columns show it went
    through (a done flag set, a decision made; every stage for a done file)."""
    if terminal == "done":
        return ALL_STAGES
    decided = {"ip": host_assigned, "triageRoute": triaged}
    return frozenset(
        s.name
        for s in PIPELINE
        if (s.flag_column is not None and s.flag_column in flags)
        or (s.decision_column is not None and decided[s.decision_column])
    )


ALL_STAGES: Final = frozenset(s.name for s in PIPELINE)


class SignatureKey(NamedTuple):
    """What makes two files of a batch count alike (a `FileSignature` without its count)."""

    finished: frozenset[str]
    triage_route: str | None
    terminal_state: str | None
    failed_stage: str | None
    ended: bool


def signature_key(sig: FileSignature) -> SignatureKey:
    return SignatureKey(
        sig.finished, sig.triage_route, sig.terminal_state, sig.failed_stage, sig.ended
    )


def count_signatures(counts: Mapping[SignatureKey, int]) -> list[FileSignature]:
    return [
        FileSignature(
            n, k.finished, k.triage_route, k.terminal_state, k.failed_stage, None, k.ended
        )
        for k, n in counts.items()
        if n
    ]


def encode_counts(signatures: Iterable[FileSignature]) -> str:
    """The batch's signature counts as JSON text, in a fixed order (the same counts give the
    same text): `[["01101000", route, terminal, failedStage, count], ...]`, with a sixth
    element 0 for files whose end is not settled yet."""
    merged: dict[SignatureKey, int] = {}
    for sig in signatures:
        key = signature_key(sig)
        merged[key] = merged.get(key, 0) + sig.count
    entries = sorted(
        (
            "".join("1" if s.name in k.finished else "0" for s in PIPELINE),
            k.triage_route or "",
            k.terminal_state or "",
            k.failed_stage or "",
            n,
            k.ended,
        )
        for k, n in merged.items()
        if n
    )
    return json.dumps(
        [
            [m, r or None, t or None, f or None, n, *(() if ended else (0,))]
            for m, r, t, f, n, ended in entries
        ]
    )


def decode_counts(text: str) -> dict[SignatureKey, int]:
    out: dict[SignatureKey, int] = {}
    for marks, route, terminal, failed, n, *ended in json.loads(text):
        settled = not ended or bool(ended[0])
        finished = frozenset(s.name for s, m in zip(PIPELINE, marks, strict=True) if m == "1")
        if terminal == "done" and settled:
            finished = ALL_STAGES  # a settled done file went through every stage
        out[SignatureKey(finished, route, terminal, failed, settled)] = int(n)
    return out


@dataclass(frozen=True)
class StageTally:
    known: int = 0
    entered: int = 0
    finished: int = 0
    skipped: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def resolved(self) -> int:
        """Files through the stage one way or another: what `stage_progress` counts."""
        return self.finished + self.skipped + self.failed


def tally(signatures: Iterable[FileSignature], position: int) -> StageTally:
    counts = dict.fromkeys(("finished", "skipped", "failed", "cancelled", "pending"), 0)
    known = entered = 0
    for sig in signatures:
        known += sig.count
        counts[sig.outcome(position)] += sig.count
        entered += sig.count if sig.entered(position) else 0
    return StageTally(
        known,
        entered,
        counts["finished"],
        counts["skipped"],
        counts["failed"],
        counts["cancelled"],
    )


def stage_status(t: StageTally, total_files: int | None) -> str:
    if total_files is not None and t.known >= total_files and t.resolved == t.known:
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
    total = latest(existing.total_files if existing else None, touch.total_files)
    updated_at = latest(existing.updated_at if existing else None, touch.last_at)
    # Milestones are stamped with the batch's latest event time, not this poll's: a poll that
    # redelivers older events after a crash stamps what the original poll would have.
    at = updated_at or touch.last_at
    closed_at = earliest(existing.closed_at if existing else None, touch.closed_at)
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
