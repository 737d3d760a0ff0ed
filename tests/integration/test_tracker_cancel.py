"""A cancelled batch in the tracker's tables, on MariaDB and SQLite: its unfinished files end
`cancelled` whatever the order of events, and a cancel after the last file changes nothing."""

import random
from collections import Counter
from datetime import datetime, timedelta

import pytest

from services.tracker.engine import make_engine
from services.tracker.fold import TrackedEvent
from services.tracker.migrate import migrate
from services.tracker.tables import (
    batch_status,
    file_distribution,
)
from shared.events import (
    Attempt,
    BatchCancelled,
    BatchClosed,
    FileContext,
    FileStageCompleted,
    FileUploaded,
    TriageDecision,
)
from shared.pipeline import PIPELINE, TRIAGE, index
from tests.tracker_expected import assert_expected_tables
from tests.tracker_scenario import (
    HOSTS,
    T0,
    apply_in_polls,
    build_scenario,
    dump,
    empty,
    state,
    tracked,
    tracker_for,
)


@pytest.fixture(params=["mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


ALL_STAGES = tuple(row.name for row in PIPELINE)
LATER = ALL_STAGES[index(TRIAGE) :]  # triage and the stages after it carry its decision


def cancelled_batch() -> tuple[list[TrackedEvent], datetime]:
    """30 files: 0-9 done; 10-19 through ivr when the batch is cancelled, except 19, in
    flight, which goes on to the end; 20-29 uploaded but never distributed. The cancel is
    read in the middle: before 19's later stages and before the uploads of 25-29."""
    cancelled_at = T0 + timedelta(minutes=5)
    names = [f"c-{i:02d}.wav" for i in range(30)]

    def stage_event(i: int, stage: str, minute: float) -> FileStageCompleted:
        return FileStageCompleted(
            batch_id="cancelled",
            file_name=names[i],
            stage=stage,
            context=FileContext(
                audio_uri=f"s3://{names[i]}",
                host=HOSTS[i % 2],
                triage=TriageDecision(route="stt") if stage in LATER else None,
            ),
            attempts=(Attempt(number=1, ok=True, started_at=T0, host=HOSTS[i % 2]),)
            if stage != "distribute"
            else (),
            completed_at=T0 + timedelta(minutes=minute),
        )

    early: list[TrackedEvent] = [
        FileUploaded(batch_id="cancelled", file_name=n, audio_uri=f"s3://{n}", uploaded_at=T0)
        for n in names[:25]
    ]
    early.append(BatchClosed(batch_id="cancelled", file_count=30, closed_at=T0))
    for i in range(20):
        stages = ALL_STAGES if i < 10 else ALL_STAGES[:3]
        early += [stage_event(i, stage, 1 + k * 0.1) for k, stage in enumerate(stages)]
    late: list[TrackedEvent] = [
        stage_event(19, stage, 6 + k * 0.1) for k, stage in enumerate(ALL_STAGES[3:])
    ]
    late += [
        FileUploaded(batch_id="cancelled", file_name=n, audio_uri=f"s3://{n}", uploaded_at=T0)
        for n in names[25:]
    ]
    cancel = BatchCancelled(batch_id="cancelled", reason="wrong batch", cancelled_at=cancelled_at)
    return [*early, cancel, *late], cancelled_at


async def test_a_cancelled_batch_ends_its_unfinished_files_cancelled_in_any_order(
    db_url: str,
) -> None:
    await migrate(db_url)
    events, cancel_time = cancelled_batch()
    cancelled_at = cancel_time.replace(tzinfo=None)  # stored as naive UTC
    engine = make_engine(db_url)
    rng = random.Random(3)
    try:
        await apply_in_polls(tracker_for(engine, interval=5), events, lambda: 7)
        reference = await state(engine)
        tables = await dump(engine)
        for _ in range(2):
            await empty(engine)
            stream = events + events
            rng.shuffle(stream)
            await apply_in_polls(
                tracker_for(engine, interval=5), stream, lambda: rng.randint(1, 40)
            )
            assert await state(engine) == reference
    finally:
        await engine.dispose()

    fd_cols = [c.name for c in file_distribution.c if c.name != "id"]
    files = {
        row[fd_cols.index("file")]: dict(zip(fd_cols, row, strict=True))
        for row in tables["fileDistribution"]
    }
    ended = Counter(f["terminalState"] for f in files.values())
    assert ended == {"done": 11, "cancelled": 19}
    for i in (*range(10, 19), *range(20, 30)):
        f = files[f"c-{i:02d}.wav"]
        assert (f["terminalState"], f["finishedAt"]) == ("cancelled", cancelled_at)
    assert files["c-19.wav"]["terminalState"] == "done"  # in flight: it finished anyway
    assert files["c-12.wav"]["ivrDone"] == 1 and files["c-12.wav"]["lidDone"] == 0

    bs_cols = [c.name for c in batch_status.c if c.name != "id"]
    (batch,) = [dict(zip(bs_cols, row, strict=True)) for row in tables["batchStatus"]]
    assert (batch["status"], batch["cancelledAt"], batch["cancelReason"]) == (
        "Cancelled",
        cancelled_at,
        "wrong batch",
    )
    assert (batch["doneFiles"], batch["cancelledFiles"], batch["failedFiles"]) == (11, 19, 0)
    assert batch["completedAt"] is None
    # Ten files were never distributed: no stage is Complete, none is shown as failed.
    assert {batch[c] for c in bs_cols if c.endswith("Status") and c != "status"} == {"InProgress"}
    kinds = Counter(row[2] for row in tables["batchExecutionLog"])
    assert kinds["stage_complete"] == 0 and kinds["file_error"] == 0


async def test_a_cancel_after_the_last_file_leaves_the_batch_complete(db_url: str) -> None:
    await migrate(db_url)
    sc = build_scenario(n=100)
    late = BatchCancelled(
        batch_id=sc.batch_id, reason="too late", cancelled_at=T0 + timedelta(days=1)
    )
    engine = make_engine(db_url)
    try:
        await apply_in_polls(tracker_for(engine), [*tracked(sc), late], lambda: 300)
        tables = await dump(engine)
    finally:
        await engine.dispose()
    assert_expected_tables(sc, tables, n=100)
