"""Batches that must still end honestly: a file no host could take, an upload after the
batch completed."""

import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from services.dashboard.pages import batch_page
from services.dashboard.queries import DashboardReader
from services.tracker.engine import make_engine
from services.tracker.migrate import migrate
from services.tracker.tables import (
    batch_status,
    dead_letters,
    file_distribution,
    processing_logs,
)
from shared.events import (
    Attempt,
    BatchClosed,
    FileContext,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
)
from tests.tracker_scenario import (
    T0,
    apply_in_polls,
    build_scenario,
    empty,
    state,
    tracked,
    tracker_for,
)


@pytest.fixture(params=["mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def _batch(engine, batch_id: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(batch_status).where(batch_status.c.batchId == batch_id))
        ).one()
    return dict(row._mapping)


async def test_a_file_no_host_could_take_fails_and_the_batch_completes(db_url: str) -> None:
    await migrate(db_url)
    b = "nohost"
    upload = FileUploaded(batch_id=b, file_name="x.wav", audio_uri="file:///x.wav", uploaded_at=T0)
    failed = FileFailed(
        batch_id=b,
        file_name="x.wav",
        stage="distribute",
        error_kind="permanent",
        error="not distributed: every GPU host is marked down",
        input_event=upload.model_dump(mode="json"),
        failed_at=T0 + timedelta(seconds=1),
    )
    closed = BatchClosed(batch_id=b, file_count=1, closed_at=T0 + timedelta(seconds=2))
    engine = make_engine(db_url)
    try:
        await apply_in_polls(tracker_for(engine), [upload, failed, closed], lambda: 1)
        batch = await _batch(engine, b)
    finally:
        await engine.dispose()
    assert batch["dbInsertionStatus"] == "Complete"
    assert (batch["status"], batch["failedFiles"]) == ("Complete", 1)


def _late_file(batch_id: str) -> list[FileUploaded | FileStageCompleted]:
    at = T0 + timedelta(days=1)
    name = "late.wav"
    upload = FileUploaded(batch_id=batch_id, file_name=name, audio_uri="file:///l", uploaded_at=at)
    routed = FileStageCompleted(
        batch_id=batch_id,
        file_name=name,
        stage="distribute",
        context=FileContext(audio_uri="file:///l", host="127.0.0.2"),
        completed_at=at,
    )
    return [upload, routed]


async def test_an_upload_after_the_batch_completed_is_rejected_and_the_batch_stays_complete(
    db_url: str,
) -> None:
    await migrate(db_url)
    sc = build_scenario(n=60)
    engine = make_engine(db_url)
    rng = random.Random(5)
    try:
        tracker = tracker_for(engine)
        await apply_in_polls(tracker, tracked(sc), lambda: 25)
        before = await _batch(engine, sc.batch_id)
        assert before["status"] == "Complete"
        await apply_in_polls(tracker, _late_file(sc.batch_id), lambda: 1)
        after = await _batch(engine, sc.batch_id)
        reference = await state(engine)
        async with engine.connect() as conn:
            files = (
                await conn.execute(
                    select(file_distribution.c.file).where(
                        file_distribution.c.batchId == sc.batch_id
                    )
                )
            ).all()
            letters = (await conn.execute(select(dead_letters))).all()
        page = await DashboardReader(engine).page(sc.batch_id, datetime(2026, 2, 1))
        assert page is not None
        html = batch_page(page, refresh_s=5)
        # Every split of the same events into polls, replayed twice: the same tables.
        for _ in range(2):
            await empty(engine)
            stream = [*tracked(sc), *_late_file(sc.batch_id)]
            await apply_in_polls(tracker_for(engine), stream, lambda: rng.randint(1, 40))
            await apply_in_polls(tracker_for(engine), stream, lambda: rng.randint(1, 40))
            assert await state(engine) == reference
    finally:
        await engine.dispose()
    assert (after["status"], after["completedAt"]) == ("Complete", before["completedAt"])
    assert after["knownFiles"] == 60 and "late.wav" not in {f.file for f in files}
    [rejected] = [r for r in letters if r.fileName == "late.wav"]
    assert rejected.batchId == sc.batch_id
    assert "uploaded after batch" in rejected.error and "closed with its 60 files" in rejected.error
    # The progress page shows it with its reason.
    assert "late.wav" in html and "closed with its 60 files" in html


async def test_a_failed_over_file_shows_its_new_host_and_keeps_both_hosts_attempts(
    db_url: str,
) -> None:
    await migrate(db_url)
    b, name = "moved", "m.wav"

    def attempt(number: int, host: str, ok: bool) -> Attempt:
        return Attempt(number=number, host=host, ok=ok, started_at=T0, error=None if ok else "x")

    def done(stage: str, host: str, assignment: int, attempts: list[Attempt], s: int):  # type: ignore[no-untyped-def]
        ctx = FileContext(
            audio_uri="u", host=host, assignment=assignment, attempt_base=assignment and 2
        )
        return FileStageCompleted(
            batch_id=b,
            file_name=name,
            stage=stage,
            context=ctx,
            attempts=tuple(attempts),
            completed_at=T0 + timedelta(seconds=s),
        )

    events = [
        FileUploaded(batch_id=b, file_name=name, audio_uri="u", uploaded_at=T0),
        done("distribute", "h1", 0, [], 1),
        done("denoise", "h1", 0, [attempt(1, "h1", True)], 2),
        FileReassigned(
            batch_id=b,
            file_name=name,
            audio_uri="u",
            stage="ivr",
            from_host="h1",
            avoid=("h1",),
            assignment=1,
            attempt_base=2,
            attempts=(attempt(1, "h1", False), attempt(2, "h1", False)),
            requested_at=T0 + timedelta(seconds=3),
        ),
        done("distribute", "h2", 1, [], 4),
        done("denoise", "h2", 1, [attempt(3, "h2", True)], 5),
        done("ivr", "h2", 1, [attempt(3, "h2", True)], 6),
    ]
    engine = make_engine(db_url)
    rng = random.Random(2)
    try:
        for _ in range(3):
            await empty(engine)
            stream = events + events
            rng.shuffle(stream)
            await apply_in_polls(tracker_for(engine), stream, lambda: rng.randint(1, 4))
            async with engine.connect() as conn:
                ip = (await conn.execute(select(file_distribution.c.ip))).scalar_one()
                logs = (
                    await conn.execute(
                        select(
                            processing_logs.c.stage_name,
                            processing_logs.c.attempt,
                            processing_logs.c.host,
                        )
                    )
                ).all()
            assert ip == "h2"
            assert sorted(tuple(r) for r in logs) == [
                ("denoise", 1, "h1"),
                ("denoise", 3, "h2"),
                ("ivr", 1, "h1"),
                ("ivr", 2, "h1"),
                ("ivr", 3, "h2"),
            ]
    finally:
        await engine.dispose()
