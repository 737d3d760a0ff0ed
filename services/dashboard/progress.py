"""A batch's progress for people: per-stage counts, files per minute and ETAs (pure).

Rates come from the tracker's per-minute view of successful attempts: while a stage runs, its
rate is what it finished in the last few minutes (so a stalled host shows as a falling rate, not
as a stale average); once it has nothing left, its rate is the average over its active span.
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, computed_field

from shared.pipeline import flow_order
from shared.status import FINISHED

RATE_WINDOW = timedelta(minutes=5)
# Shorter spans than this give wild rates (the first file of a stage is one file per second).
MIN_RATE_SPAN = timedelta(seconds=5)
# Attempts without a host: the LLM API and the distributor's routing.
NO_HOST = "LLM API / routing"


class StageCounts(BaseModel):
    """One row of `v_batch_stage_progress`, and the attempts of `v_stage_error_rate`.

    `failed` counts the files that failed at or before the stage (they will never reach it);
    `failed_here` only those that gave up at this very stage."""

    stage: str
    status: str
    finished: int = 0
    skipped: int = 0
    failed: int = 0
    failed_here: int = 0
    cancelled: int = 0
    pending: int = 0
    attempts: int = 0
    failed_attempts: int = 0


class StageActivity(BaseModel):
    """When a stage's attempts ran, and how many files it finished per minute."""

    first_at: datetime | None = None
    last_at: datetime | None = None
    minutes: list[tuple[datetime, int]] = []


class StageProgress(StageCounts):
    total: int
    files_per_min: float | None = None
    eta_s: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ended(self) -> int:
        """Files with an outcome at this stage: finished it, skipped it, failed or cancelled."""
        return self.finished + self.skipped + self.failed + self.cancelled

    @computed_field  # type: ignore[prop-decorator]
    @property
    def remaining(self) -> int:
        return max(self.total - self.ended, 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def percent(self) -> float:
        return round(100.0 * self.ended / self.total, 1) if self.total else 0.0


class BatchRow(BaseModel):
    """One row of `batchStatus`, as the batches list shows it."""

    batch_id: str
    status: str
    total_files: int | None
    known_files: int
    done: int
    skipped: int
    failed: int
    cancelled: int
    created_at: datetime | None
    updated_at: datetime | None
    completed_at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class BatchProgress(BaseModel):
    batch: BatchRow
    stages: list[StageProgress]
    eta_s: float | None
    as_of: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def finished(self) -> bool:
        return self.batch.finished


class HostStage(BaseModel):
    """A host's attempts at one stage (`host` is None for the LLM API and routing)."""

    host: str | None
    stage: str
    attempts: int
    files: int
    failed_attempts: int
    first_at: datetime | None
    last_at: datetime | None


class HostThroughput(BaseModel):
    host: str
    stages: list[str]
    attempts: int
    files: int
    failed_attempts: int
    files_per_min: float | None
    last_at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_rate(self) -> float:
        return round(self.failed_attempts / self.attempts, 4) if self.attempts else 0.0


class FileFailure(BaseModel):
    file: str
    stage: str | None
    host: str | None
    error: str | None
    at: datetime | None


class AttemptError(BaseModel):
    file: str
    stage: str
    host: str | None
    attempt: int | None
    kind: str | None
    error: str | None
    at: datetime | None


def naive_utc(t: datetime) -> datetime:
    """The tables hold naive UTC times; an aware `now` is brought to the same footing."""
    return t if t.tzinfo is None else t.astimezone(UTC).replace(tzinfo=None)


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def per_minute(count: float, span: timedelta) -> float | None:
    if span < MIN_RATE_SPAN:
        return None
    return round(count * 60.0 / span.total_seconds(), 1)


def stage_rate(
    activity: StageActivity,
    now: datetime,
    *,
    running: bool,
    window: timedelta = RATE_WINDOW,
) -> float | None:
    """Files per minute of a stage; None when there is too little to say."""
    if activity.first_at is None:
        return None
    if not running:
        total = sum(n for _, n in activity.minutes)
        return per_minute(total, (activity.last_at or now) - activity.first_at)
    # Whole minute buckets from `since`, so the count and the span cover the same time.
    since = floor_minute(now - window)
    recent = sum(n for minute, n in activity.minutes if minute >= since)
    return per_minute(recent, now - max(since, activity.first_at))


def eta_seconds(remaining: int, files_per_min: float | None) -> float | None:
    if remaining <= 0:
        return 0.0
    if not files_per_min:
        return None
    return round(remaining / files_per_min * 60.0, 1)


def pipeline_etas(etas: Sequence[float | None]) -> list[float | None]:
    """A stage cannot end before the stages upstream of it: each ETA is at least theirs,
    and unknown once any upstream one is."""
    out: list[float | None] = []
    floor: float | None = 0.0
    for eta in etas:
        floor = None if floor is None or eta is None else max(floor, eta)
        out.append(floor)
    return out


def batch_progress(
    batch: BatchRow,
    counts: Sequence[StageCounts],
    activity: dict[str, StageActivity],
    now: datetime,
) -> BatchProgress:
    """Combine the dashboard rows of one batch into its progress at `now`."""
    now = naive_utc(now)
    total = batch.total_files if batch.total_files is not None else batch.known_files
    stages: list[StageProgress] = []
    for c in counts:
        stage = StageProgress(**c.model_dump(), total=total)
        running = not batch.finished and stage.remaining > 0
        stage.files_per_min = stage_rate(
            activity.get(c.stage, StageActivity()), now, running=running
        )
        stage.eta_s = eta_seconds(stage.remaining, stage.files_per_min if running else None)
        stages.append(stage)
    if batch.finished:
        etas: list[float | None] = [0.0] * len(stages)
    else:
        etas = pipeline_etas([s.eta_s for s in stages])
        # While the batch is open more files may come: no stage can promise an end.
        if batch.total_files is None:
            etas = [None] * len(stages)
    for stage, eta in zip(stages, etas, strict=True):
        stage.eta_s = eta
    return BatchProgress(batch=batch, stages=stages, eta_s=etas[-1] if etas else None, as_of=now)


def host_throughput(rows: Iterable[HostStage]) -> list[HostThroughput]:
    """Per GPU host (and the LLM API as one more row): files per minute over its active span,
    and when it last attempted anything, so a stalled host stands out."""
    by_host: dict[str, list[HostStage]] = {}
    for row in rows:
        by_host.setdefault(row.host or NO_HOST, []).append(row)
    out = []
    for host, hs in sorted(by_host.items()):
        firsts = [r.first_at for r in hs if r.first_at is not None]
        lasts = [r.last_at for r in hs if r.last_at is not None]
        files = sum(r.files for r in hs)
        out.append(
            HostThroughput(
                host=host,
                stages=sorted({r.stage for r in hs}, key=flow_order),
                attempts=sum(r.attempts for r in hs),
                files=files,
                failed_attempts=sum(r.failed_attempts for r in hs),
                files_per_min=per_minute(files, max(lasts) - min(firsts)) if firsts else None,
                last_at=max(lasts) if lasts else None,
            )
        )
    return out


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds <= 0:
        return "done"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_rate(files_per_min: float | None) -> str:
    return "—" if files_per_min is None else f"{files_per_min:,.1f}/min"
