"""A stage's milestones as a function of its files' resolutions alone: pure, no I/O.

One rule stamps a stage's `stage_start`, `stage_progress` and `stage_complete` rows, so they
do not depend on the order of consumption: a completed (or cancelled) stage's from every file
of the batch (poll_plan.py `settle`), a running stage's after every poll from the batch's
kept index (live_milestones.py):

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from services.tracker.batch_status import COMPLETE, IN_PROGRESS
from services.tracker.poll_changes import (
    STAGE_COMPLETE,
    STAGE_PROGRESS,
    STAGE_START,
    LogRow,
    sha256_of,
)
from services.tracker.resolution_index import BatchIndex
from services.tracker.resolutions import (
    FAILED,
    FINISHED,
    SKIPPED,
    resolution_time,
)
from shared.pipeline import PIPELINE


@dataclass(frozen=True)
class StageToFinalize:
    position: int
    started: bool  # the batch's counts show the stage started (or Complete)
    complete: bool


def stage_milestones(
    batch_id: str,
    stages: Iterable[StageToFinalize],
    files: BatchIndex,
    *,
    total_files: int | None,
    closed_at: datetime | None,
    interval: int,
    unmoved: Mapping[int, int] | None = None,
) -> tuple[list[LogRow], dict[str, int]]:
    """The stages' milestone rows, and per stage how many files resolved it (the progress
    rows above that count must not exist). A stage that is not `complete` gets its start and
    progress rows only: what a running stage shows (live_milestones.py). `unmoved`: per
    stage position, a count of first resolutions known unchanged; the progress rows within
    it are the caller's already, and left out."""
    rows: list[LogRow] = []
    resolved: dict[str, int] = {}
    for stage in stages:
        name = PIPELINE[stage.position].name
        ordered = files.ordered(stage.position)
        resolved[name] = len(ordered)
        if stage.started:
            start = _start_time(files, stage.position)
            if start is not None:
                rows.append(
                    _row(batch_id, name, STAGE_START, start, total_files, IN_PROGRESS, 0, 0, 0)
                )
        known = (unmoved or {}).get(stage.position, 0)
        for i in range(known // interval * interval + interval, len(ordered) + 1, interval):
            rows.append(
                _row(
                    batch_id,
                    name,
                    STAGE_PROGRESS,
                    resolution_time(ordered[i - 1]),
                    total_files,
                    IN_PROGRESS,
                    i,
                    files.among_first(stage.position, i, FAILED),
                    files.among_first(stage.position, i, SKIPPED),
                    key_part=i,
                )
            )
        if stage.complete:
            n = len(ordered)
            failed = files.among_first(stage.position, n, FAILED) if n else 0
            skipped = files.among_first(stage.position, n, SKIPPED) if n else 0
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


def absent_milestones(
    batch_id: str, stages: Iterable[StageToFinalize], rows: Iterable[LogRow]
) -> list[str]:
    """The eventKeys of the stages' start and complete rows that the rule no longer gives
    (`rows`, from `stage_milestones`): a stage counted as started while a late file was
    still taken for one of the batch's, say, is not started once the close says otherwise."""
    given = {r.event_key for r in rows}
    return [
        key
        for stage in stages
        for event_type in (STAGE_START, STAGE_COMPLETE)
        if (key := _key(batch_id, PIPELINE[stage.position].name, event_type, None)) not in given
    ]


def _start_time(files: BatchIndex, position: int) -> datetime | None:
    ordered = files.ordered(position)
    candidates: list[datetime] = [resolution_time(ordered[0])] if ordered else []
    if position == 0:
        first = files.first_seen()
        candidates += [first] if first is not None else []
    else:
        finished = next((r for r in files.ordered(position - 1) if r[-1] == FINISHED), None)
        if finished is not None:
            candidates.append(resolution_time(finished))
    return min(candidates, default=None)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)


@lru_cache(maxsize=1 << 16)
def _key(batch_id: str, stage: str, event_type: str, key_part: int | None) -> str:
    # A running stage's rows are stamped again after every poll: their keys, never new.
    if key_part is None:
        return sha256_of(batch_id, stage, event_type)
    return sha256_of(batch_id, stage, event_type, key_part)


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
    return LogRow(
        event_key=_key(batch_id, stage, event_type, key_part),
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
