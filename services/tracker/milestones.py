"""A stage's milestones as a function of its files' resolutions alone: pure, no I/O.

While a stage runs, the tracker logs its `stage_start` and `stage_progress` rows as a poll's
counts cross them (batch_status.py), stamped with what that poll knew: provisional, since
another order of the same events crosses them in other polls. When the stage is Complete
(or its batch cancelled), `final_milestones` rewrites every milestone of the stage from the
files' *resolutions*, so the rows no longer depend on the order of consumption:

- a file's resolution for a stage is the earliest event that got it through the stage one
  way or another: finishing it or a later stage (`finished`), triage routing it out before it
  (`skipped`), or failing at it or an earlier stage (`failed`); its time is that event's
  time (resolutions.py, kept per file in `fileDistribution.stageResolutions`);
- order the stage's resolutions by (time, kind): the k-th `stage_progress` row
  (`processedFiles` = k * interval) is stamped with the time of the (k * interval)-th one and
  counts the failed and skipped among the first k * interval;
- `stage_complete`: the time of the last resolution (or the batch's close, if later), every
  resolution counted (`processedFiles`), its failed and skipped among them;
- `stage_start`: the time the first file entered the stage: the earliest resolution of the
  stage, or the earliest time a file finished the stage before (for the first stage, the
  earliest upload); it counts nothing (0 processed, failed, skipped);
- `totalFiles` is the batch's size (`BatchClosed.file_count`) on every row.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.tracker.batch_status import COMPLETE, IN_PROGRESS
from services.tracker.poll_changes import (
    STAGE_COMPLETE,
    STAGE_PROGRESS,
    STAGE_START,
    LogRow,
    sha256_of,
)
from services.tracker.resolutions import (
    FAILED,
    FINISHED,
    SKIPPED,
    Resolution,
    Resolutions,
    resolution_time,
)
from shared.pipeline import PIPELINE


@dataclass(frozen=True)
class FileResolutions:
    """What the rule needs of one file: when it was first seen, and its resolutions."""

    created_at: datetime | None
    resolutions: Resolutions


@dataclass(frozen=True)
class StageToFinalize:
    position: int
    started: bool  # the batch's counts show the stage started (or Complete)
    complete: bool


def final_milestones(
    batch_id: str,
    stages: Iterable[StageToFinalize],
    files: Sequence[FileResolutions],
    *,
    total_files: int | None,
    closed_at: datetime | None,
    interval: int,
) -> tuple[list[LogRow], dict[str, int]]:
    """The stages' milestone rows, and per stage how many files resolved it (the progress
    rows above that count must not exist)."""
    rows: list[LogRow] = []
    resolved: dict[str, int] = {}
    for stage in stages:
        name = PIPELINE[stage.position].name
        ordered = sorted(_at(files, stage.position))
        resolved[name] = len(ordered)
        if stage.started:
            start = _start_time(files, stage.position, ordered)
            if start is not None:
                rows.append(
                    _row(batch_id, name, STAGE_START, start, total_files, IN_PROGRESS, 0, 0, 0)
                )
        failed = skipped = 0
        for i, r in enumerate(ordered, start=1):
            failed += r[-1] == FAILED
            skipped += r[-1] == SKIPPED
            if i % interval == 0:
                rows.append(
                    _row(
                        batch_id,
                        name,
                        STAGE_PROGRESS,
                        resolution_time(r),
                        total_files,
                        IN_PROGRESS,
                        i,
                        failed,
                        skipped,
                        key_part=i,
                    )
                )
        if stage.complete:
            last = resolution_time(ordered[-1]) if ordered else None
            end = _latest(last, closed_at)
            if end is not None:
                rows.append(
                    _row(
                        batch_id,
                        name,
                        STAGE_COMPLETE,
                        end,
                        total_files,
                        COMPLETE,
                        len(ordered),
                        failed,
                        skipped,
                    )
                )
    return rows, resolved


def _at(files: Sequence[FileResolutions], position: int) -> Iterable[Resolution]:
    for f in files:
        if len(f.resolutions) > position:
            r = f.resolutions[position]
            if r is not None:
                yield r


def _start_time(
    files: Sequence[FileResolutions], position: int, ordered: list[Resolution]
) -> datetime | None:
    candidates: list[datetime] = [resolution_time(ordered[0])] if ordered else []
    if position == 0:
        candidates += [f.created_at for f in files if f.created_at is not None]
    else:
        finished = [r for r in _at(files, position - 1) if r[-1] == FINISHED]
        if finished:
            candidates.append(resolution_time(min(finished)))
    return min(candidates, default=None)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)


def _row(
    batch_id: str,
    stage: str,
    event_type: str,
    at: datetime,
    total: int | None,
    status: str,
    processed: int,
    failed: int,
    skipped: int,
    key_part: int | None = None,
) -> LogRow:
    key = (
        sha256_of(batch_id, stage, event_type)
        if key_part is None
        else sha256_of(batch_id, stage, event_type, key_part)
    )
    return LogRow(
        event_key=key,
        batch_id=batch_id,
        stage=stage,
        event_type=event_type,
        created_at=at,
        total_files=total,
        processed_files=processed,
        failed_files=failed,
        skipped_files=skipped,
        status=status,
    )
