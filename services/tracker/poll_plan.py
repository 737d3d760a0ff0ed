"""What one poll changes, planned from its events and the rows it loaded: pure, no I/O.

The store (store.py) loads rows under the poll's batches' locks and writes what this module
plans; every rule lives here:

- late uploads: an upload after the close of a batch that already has its `file_count`
  uploaded files is rejected, decided in the uploads partition's order; a file seen before
  its upload is provisional, and dropped (its rows deleted) once the batch is full
  (`decide_uploads`, `provisional`, `forget`);
- the file rows that change: the poll's changes merged into the rows read
  (`FileChange.merge`), a cancelled batch's cancel applied, unchanged rows left out
  (`plan_files`); the batches' signature counts move with exactly those rows, so a replayed
  event moves no count;
- the cancel of a batch's other unfinished files (`cancel_moves`);
- each batch's new row and provisional milestones (`plan_batch`, from batch_status.py), and
  what needs every file of a batch (`settle`): `completedAt` when the batch completes or a
  finish moves after, and the final milestones of the stages that complete (milestones.py).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import NamedTuple

from services.tracker.batch_status import (
    COMPLETE,
    BatchStatusRow,
    earliest,
    latest,
    logged_before,
    recompute,
)
from services.tracker.file_events import has_upload
from services.tracker.milestones import StageToFinalize, stage_milestones
from services.tracker.poll_changes import FileChange, LogRow, PollChanges
from services.tracker.resolution_index import BatchIndex, IndexedFile
from services.tracker.resolutions import Resolution, Resolutions, decode_resolutions
from services.tracker.signatures import (
    SignatureKey,
    count_signatures,
    encode_counts,
    file_signature,
    provisional_files,
    signature_key,
    uploaded_files,
)
from shared.pipeline import PIPELINE

Counts = dict[SignatureKey, int]
FileId = tuple[str, str]  # (batch id, file name)


@dataclass
class Touched:
    """What a poll changed in a batch's files, beyond its counts."""

    # Stage positions where some file's resolution changed; -1: some file's upload time.
    resolutions: set[int] = field(default_factory=set)
    finishes: bool = False  # some file's finishedAt changed


def reject_closes(changes: PollChanges, existing: Mapping[str, BatchStatusRow]) -> None:
    """A close with another `file_count` than the batch's first is kept as a dead letter and
    changes nothing: a Complete batch is never reopened by a second submit."""
    for batch_id, touch in changes.batches.items():
        old = existing[batch_id].total_files
        total = old if old is not None else touch.total_files
        for count, at in touch.closes:
            if count != total:
                changes.reject_close(
                    batch_id,
                    count,
                    at,
                    f"rejected: batch {batch_id} is closed with {total} files; "
                    f"a later close says {count}",
                )


def decide_uploads(
    changes: PollChanges,
    existing: Mapping[str, BatchStatusRow],
    counts: Mapping[str, Counts],
    old_rows: Mapping[FileId, FileChange],
) -> set[str]:
    """Accept or reject the poll's uploads in their partition's order, and drop the files a
    full batch can no longer take; return the batches whose provisional rows (files seen only
    by events after their upload) must go too (the store reads and deletes them, `forget`).

    A batch's uploads and closes share one partition (key: the batch id), so the decision is
    a function of that partition alone, whatever the other partitions do: an upload that
    comes after a close, when the batch already has its `file_count` uploaded files, is
    rejected (a dead letter says why). A file counts only once its upload is applied; one
    whose later events came first is provisional (its row is written, not counted toward
    the size) until its upload is accepted, or dropped once the batch is full."""
    scan: set[str] = set()
    for batch_id, touch in changes.batches.items():
        old = existing[batch_id]
        total = old.total_files if old.total_files is not None else touch.total_files
        if total is None:
            continue  # not closed: every upload is accepted
        uploaded = uploaded_files(counts[batch_id])
        accepted: set[str] = set()
        for upload in touch.uploads:
            name = upload.file_name
            if name in accepted or _has_upload(old_rows.get((batch_id, name))):
                continue  # a repeated upload of a file it has
            if (old.total_files is not None or upload.after_close) and uploaded >= total:
                changes.reject_upload(
                    upload,
                    batch_id,
                    f"rejected: uploaded after batch {batch_id} closed with its {total} files",
                )
                continue
            accepted.add(name)
            uploaded += 1
        if uploaded < total:
            continue
        # Full: a file without an accepted upload can only be rejected when it comes.
        for key, change in list(changes.files.items()):
            if key[0] != batch_id or key[1] in accepted or has_upload(change.applied_events):
                continue
            if not _has_upload(old_rows.get(key)):
                changes.drop_file(key)
        if provisional_files(counts[batch_id]):
            scan.add(batch_id)
    return scan


def _has_upload(row: FileChange | None) -> bool:
    # A row the previous version wrote (no events kept) was counted when written.
    return row is not None and has_upload(row.applied_events)


def provisional(rows: Sequence[FileChange], changes: PollChanges) -> list[FileChange]:
    """Of a full batch's rows, those to delete: no upload applied, and not in the poll (a
    poll file of a full batch kept this far has its accepted upload)."""
    return [r for r in rows if not _has_upload(r) and r.key not in changes.files]


def forget(rows: Sequence[FileChange], counts: dict[str, Counts]) -> dict[str, Touched]:
    """Take deleted provisional rows out of their batches' counts."""
    touched: dict[str, Touched] = {}
    for row in rows:
        batch = counts[row.batch_id]
        key = signature_key(file_signature(row))
        batch[key] = batch.get(key, 0) - 1
        t = touched.setdefault(row.batch_id, Touched())
        t.resolutions.update(range(-1, len(PIPELINE)))
        t.finishes = True
    return touched


def plan_files(
    changes: PollChanges,
    old_rows: Mapping[FileId, FileChange],
    counts: dict[str, Counts],
    cancels: Mapping[str, datetime],
) -> tuple[list[FileChange], dict[str, Touched]]:
    """The file rows that change, with the batches' counts moved (in `counts`) and what
    changed beyond them."""
    touched: dict[str, Touched] = {}
    rows: list[FileChange] = []
    for key, change in changes.files.items():
        old = old_rows.get(key)
        new = change if old is None else _merge(old, change)
        cancelled_at = cancels.get(change.batch_id)
        if cancelled_at is not None:
            new = new.cancelled_at(cancelled_at)
        if new == old:
            continue
        rows.append(new)
        batch = counts[change.batch_id]
        new_key = signature_key(file_signature(new))
        batch[new_key] = batch.get(new_key, 0) + 1
        t = touched.setdefault(change.batch_id, Touched())
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
    return rows, touched


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


def cancels(changes: PollChanges, existing: Mapping[str, BatchStatusRow]) -> dict[str, datetime]:
    """Each cancelled batch's earliest cancel, known before or brought by the poll."""
    return {
        b: at
        for b, touch in changes.batches.items()
        if (at := earliest(existing[b].cancelled_at, touch.cancelled_at))
    }


def cancel_moves(
    changes: PollChanges, existing: Mapping[str, BatchStatusRow], counts: dict[str, Counts]
) -> list[tuple[str, datetime]]:
    """Files of a cancelled batch that have no terminal state never will (stages stop
    starting them): they end `cancelled` at the batch's earliest cancel time. The poll's own
    files got that in `plan_files`; the batch's other files get it from the store, once,
    when the poll brings the batch's first (or an earlier) cancel, and their counts move
    here. A file that finishes anyway later still ends done, skipped or failed (they outrank
    cancelled)."""
    moves: list[tuple[str, datetime]] = []
    for batch_id, touch in changes.batches.items():
        at, old = touch.cancelled_at, existing[batch_id].cancelled_at
        if at is None or (old is not None and old <= at):
            continue
        moves.append((batch_id, at))
        batch = counts[batch_id]
        for key in [k for k in batch if k.terminal_state is None]:
            moved = key._replace(terminal_state="cancelled")
            batch[moved] = batch.get(moved, 0) + batch.pop(key)
    return moves


@dataclass(frozen=True)
class BatchPlan:
    """A batch's new row and provisional milestones, and what `settle` must still do."""

    old: BatchStatusRow
    row: BatchStatusRow
    provisional: list[LogRow]
    stages: list[StageToFinalize]  # stages whose final milestones are (re)written
    running: list[StageToFinalize]  # stages whose milestones are live (live_milestones.py)
    completion_moved: bool  # `completedAt` must be (re)computed from every file

    @property
    def needs_files(self) -> bool:
        return bool(self.stages) or self.completion_moved


def plan_batch(
    old: BatchStatusRow,
    changes: PollChanges,
    before: Counts,
    after: Counts,
    touched: Touched,
    interval: int,
) -> BatchPlan:
    batch_id = old.batch_id
    sigs = count_signatures(after)
    logged = logged_before(count_signatures(before), old.total_files, interval)
    row, logs = recompute(batch_id, old, changes.batches[batch_id], sigs, logged, interval)
    row = replace(row, file_counts=encode_counts(sigs))
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
    running = [
        StageToFinalize(position, now[s.name].started, complete=False)
        for position, s in enumerate(PIPELINE)
        if not row.cancelled and not now[s.name].completed
    ]
    complete = row.status == COMPLETE
    completion_moved = complete and (
        old.status != COMPLETE or touched.finishes or row.closed_at != old.closed_at
    )
    if not completion_moved:
        row = replace(row, completed_at=old.completed_at if complete else None)
    return BatchPlan(old, row, logs, stages, running, completion_moved)


class BatchFile(NamedTuple):
    """What `settle` reads of each file of a batch."""

    key: str
    created_at: datetime | None
    finished_at: datetime | None
    resolutions: str | None


def settle(
    plan: BatchPlan, files: Sequence[BatchFile], interval: int
) -> tuple[BatchStatusRow, list[LogRow], dict[str, int]]:
    """The batch's row with its `completedAt` (its files' latest finish, or the close if
    later), the final milestones of `plan.stages`, and per such stage how many files resolved
    it (the progress rows above that count must not exist)."""
    row = plan.row
    if plan.completion_moved:
        last_finish = max((f.finished_at for f in files if f.finished_at is not None), default=None)
        row = replace(row, completed_at=latest(last_finish, row.closed_at) or row.updated_at)
    if not plan.stages or any(f.resolutions is None for f in files):
        return row, [], {}  # files the previous version wrote have no resolutions: left as is
    finals, resolved = stage_milestones(
        row.batch_id,
        plan.stages,
        batch_index(files),
        total_files=row.total_files,
        closed_at=row.closed_at,
        interval=interval,
    )
    return row, finals, resolved


def batch_index(files: Sequence[BatchFile]) -> BatchIndex:
    return BatchIndex(
        IndexedFile(f.key, f.created_at, decode_resolutions(f.resolutions)) for f in files
    )
