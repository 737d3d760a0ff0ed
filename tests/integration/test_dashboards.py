"""The dashboard views of migration 0004, on MariaDB and SQLite, against a known batch.

The batch `dash` has 10 files with hand-picked outcomes, hosts and timings; the expected
numbers below are worked out by hand from that description, not by the code under test.
- hosts: even files on 127.0.0.2, odd files on 127.0.0.3 (GPU stages); LLM attempts have none;
- f00-f05 done; f06 skipped by triage; f07 failed at stt (a 503, then a 422); f08 failed at
  denoise (a 422); f09 finished lid and waits for triage;
- retried: f01 at denoise and f03 at ivr (a 503, then success);
- every attempt lasts 100 ms, except triage (0 ms), stt (1000 + 100 x file number ms), and
  f05's llm2 (1000 ms);
- stage k (denoise 1 ... llm2 7) of file i starts at 09:0k:i s, so every file finishes it in
  minute 09:0k; f05's llm2 starts at 09:07:59.5 and ends in minute 09:08.
A second batch (`other`, 2 files) must not leak into `dash`'s numbers; a third (`stopped`, 3
files distributed, then cancelled) shows cancelled files.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from services.dashboard.summary import batch_summary
from services.tracker.engine import make_engine
from services.tracker.fold import TrackedEvent
from services.tracker.migrate import migrate
from shared.events import (
    Attempt,
    BatchCancelled,
    BatchClosed,
    FileContext,
    FileFailed,
    FileStageCompleted,
    FileUploaded,
    TriageDecision,
)
from shared.pipeline import PIPELINE, TRIAGE
from shared.stages import GPU_STAGES
from tests.tracker_scenario import apply_in_polls, build_scenario, tracked, tracker_for

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
H1, H2 = "127.0.0.2", "127.0.0.3"
STAGES = tuple(row.name for row in PIPELINE[1:])  # every stage after distribute
GPU = GPU_STAGES
# A file's context carries triage's decision from triage on.
DECIDED = STAGES[STAGES.index(TRIAGE) :]


@pytest.fixture(params=["mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def minute_of(stage: str) -> int:
    return 0 if stage == "distribute" else STAGES.index(stage) + 1


def attempt(
    stage: str, i: int, number: int, ok: bool, ms: float, error: str | None = None
) -> Attempt:
    kind = None
    if not ok:
        kind = "transient" if error and error.startswith("HTTP 503") else "permanent"
    return Attempt(
        number=number,
        host=(H1 if i % 2 == 0 else H2) if stage in GPU else None,
        ok=ok,
        error=error,
        error_kind=kind,
        started_at=T0 + timedelta(minutes=minute_of(stage), seconds=i),
        duration_ms=ms,
    )


def duration(stage: str, i: int) -> float:
    return {"triage": 0.0, "stt": 1000.0 + 100 * i}.get(stage, 100.0)


def dash_batch() -> list[TrackedEvent]:
    events: list[TrackedEvent] = [BatchClosed(batch_id="dash", file_count=10, closed_at=T0)]
    for i in range(10):
        name, host = f"f{i:02d}.wav", H1 if i % 2 == 0 else H2
        events.append(
            FileUploaded(batch_id="dash", file_name=name, audio_uri=f"s3://{name}", uploaded_at=T0)
        )
        last = {6: "triage", 7: "llm2", 8: "llm2", 9: "lid"}.get(i, "llm2")
        triage = TriageDecision(route="skip" if i == 6 else "stt", rule="r" if i == 6 else None)
        for stage in ("distribute", *STAGES):
            context = FileContext(
                audio_uri=f"s3://{name}",
                host=host,
                triage=triage if stage in DECIDED else None,
            )
            failures: list[Attempt] = []
            if (i, stage) in ((1, "denoise"), (3, "ivr")):
                failures = [attempt(stage, i, 1, False, duration(stage, i), "HTTP 503")]
            if (i, stage) in ((7, "stt"), (8, "denoise")):
                bad = [attempt(stage, i, 1, False, duration(stage, i), "HTTP 422 corrupt")]
                if stage == "stt":
                    bad = [
                        attempt(stage, i, 1, False, duration(stage, i), "HTTP 503"),
                        attempt(stage, i, 2, False, duration(stage, i), "HTTP 422 corrupt"),
                    ]
                events.append(
                    FileFailed(
                        batch_id="dash",
                        file_name=name,
                        stage=stage,
                        host=host,
                        error_kind="permanent",
                        error=f"{stage} gave up: HTTP 422 corrupt",
                        attempts=tuple(bad),
                        input_event={"context": {"host": host}},
                        failed_at=T0 + timedelta(minutes=minute_of(stage), seconds=i + 1),
                    )
                )
                break
            attempts: tuple[Attempt, ...] = ()
            if stage != "distribute":
                ok = attempt(stage, i, len(failures) + 1, True, duration(stage, i))
                if (i, stage) == (5, "llm2"):
                    ok = ok.model_copy(
                        update={
                            "started_at": T0 + timedelta(minutes=7, seconds=59.5),
                            "duration_ms": 1000.0,
                        }
                    )
                attempts = (*failures, ok)
            events.append(
                FileStageCompleted(
                    batch_id="dash",
                    file_name=name,
                    stage=stage,
                    context=context,
                    attempts=attempts,
                    completed_at=T0 + timedelta(minutes=minute_of(stage), seconds=i + 1),
                )
            )
            if stage == last:
                break
    return events


def other_batches() -> list[TrackedEvent]:
    events: list[TrackedEvent] = []
    for batch, count in (("other", 2), ("stopped", 3)):
        events.append(BatchClosed(batch_id=batch, file_count=count, closed_at=T0))
        for i in range(count):
            name = f"{batch}-{i}.wav"
            events.append(
                FileUploaded(batch_id=batch, file_name=name, audio_uri=name, uploaded_at=T0)
            )
            events.append(
                FileStageCompleted(
                    batch_id=batch,
                    file_name=name,
                    stage="distribute",
                    context=FileContext(audio_uri=name, host=H1),
                    completed_at=T0,
                )
            )
            if batch == "other":
                events.append(
                    FileStageCompleted(
                        batch_id=batch,
                        file_name=name,
                        stage="denoise",
                        context=FileContext(audio_uri=name, host=H1),
                        attempts=(
                            Attempt(
                                number=1,
                                host=H1,
                                ok=False,
                                error="HTTP 503",
                                error_kind="transient",
                                started_at=T0,
                                duration_ms=99_000.0,
                            ),
                            Attempt(number=2, host=H1, ok=True, started_at=T0, duration_ms=1.0),
                        ),
                        completed_at=T0,
                    )
                )
    events.append(BatchCancelled(batch_id="stopped", reason="test", cancelled_at=T0))
    return events


def plain(value: Any) -> Any:
    """Database values as plain Python: DECIMAL → int or float, a minute → 'YYYY-MM-DD HH:MM'."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, str) and len(value) == 19 and value[4] == "-" and value[13] == ":":
        return value[:16]  # SQLite's text timestamps
    return value


async def query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(sql), params)
            return [{k: plain(v) for k, v in row.items()} for row in result.mappings()]
    finally:
        await engine.dispose()


@pytest.fixture
async def dash_url(db_url: str) -> str:
    await migrate(db_url)
    engine = make_engine(db_url)
    try:
        await apply_in_polls(tracker_for(engine), [*dash_batch(), *other_batches()], lambda: 25)
    finally:
        await engine.dispose()
    return db_url


async def test_batch_stage_progress(dash_url: str) -> None:
    rows = await query(
        dash_url,
        "SELECT stage, stageStatus, totalFiles, knownFiles, finishedFiles, skippedFiles, "
        "failedFiles, cancelledFiles, pendingFiles, percentDone "
        "FROM v_batch_stage_progress WHERE batchId = :b ORDER BY stageOrder",
        b="dash",
    )
    got = [tuple(r.values()) for r in rows]
    assert got == [
        ("distribute", "Complete", 10, 10, 10, 0, 0, 0, 0, 100),
        ("denoise", "Complete", 10, 10, 9, 0, 1, 0, 0, 100),
        ("ivr", "Complete", 10, 10, 9, 0, 1, 0, 0, 100),
        ("lid", "Complete", 10, 10, 9, 0, 1, 0, 0, 100),
        ("triage", "InProgress", 10, 10, 8, 0, 1, 0, 1, 90),
        ("stt", "InProgress", 10, 10, 6, 1, 2, 0, 1, 90),
        ("llm1", "InProgress", 10, 10, 6, 1, 2, 0, 1, 90),
        ("llm2", "InProgress", 10, 10, 6, 1, 2, 0, 1, 90),
    ]
    stopped = await query(
        dash_url,
        "SELECT stage, stageStatus, batchStatus, finishedFiles, cancelledFiles, percentDone "
        "FROM v_batch_stage_progress WHERE batchId = 'stopped' ORDER BY stageOrder",
    )
    assert [tuple(r.values()) for r in stopped[:2]] == [
        ("distribute", "Complete", "Cancelled", 3, 0, 100),
        ("denoise", "InProgress", "Cancelled", 0, 3, 0),
    ]
    batches = await query(dash_url, "SELECT DISTINCT batchId FROM v_batch_stage_progress")
    assert sorted(r["batchId"] for r in batches) == ["dash", "other", "stopped"]


async def test_files_per_minute_per_stage(dash_url: str) -> None:
    rows = await query(
        dash_url,
        "SELECT stage_name, minute, files FROM v_stage_files_per_minute "
        "WHERE batch_id = :b ORDER BY minute, stage_name",
        b="dash",
    )
    assert [tuple(r.values()) for r in rows] == [
        ("denoise", "2026-01-15 09:01", 9),
        ("ivr", "2026-01-15 09:02", 9),
        ("lid", "2026-01-15 09:03", 9),
        ("triage", "2026-01-15 09:04", 8),
        ("stt", "2026-01-15 09:05", 6),
        ("llm1", "2026-01-15 09:06", 6),
        ("llm2", "2026-01-15 09:07", 5),
        ("llm2", "2026-01-15 09:08", 1),  # f05 started at 09:07:59.5 and took a second
    ]


async def test_error_rate_per_stage(dash_url: str) -> None:
    rows = await query(
        dash_url,
        "SELECT stage_name, attempts, failedAttempts, attemptErrorRate, files, failedFiles, "
        "fileErrorRate FROM v_stage_error_rate WHERE batch_id = :b",
        b="dash",
    )
    got = {r.pop("stage_name"): tuple(r.values()) for r in rows}
    assert got == {
        "denoise": (11, 2, pytest.approx(2 / 11, abs=1e-4), 10, 1, pytest.approx(0.1)),
        "ivr": (10, 1, pytest.approx(0.1), 9, 0, 0),
        "lid": (9, 0, 0, 9, 0, 0),
        "triage": (8, 0, 0, 8, 0, 0),
        "stt": (8, 2, pytest.approx(0.25), 7, 1, pytest.approx(1 / 7, abs=1e-4)),
        "llm1": (6, 0, 0, 6, 0, 0),
        "llm2": (6, 0, 0, 6, 0, 0),
    }


async def test_error_rate_per_host(dash_url: str) -> None:
    rows = await query(
        dash_url,
        "SELECT host, stage_name, attempts, failedAttempts, transientErrors, permanentErrors, "
        "errorRate FROM v_host_error_rate WHERE batch_id = :b",
        b="dash",
    )
    got = {(r.pop("host"), r.pop("stage_name")): tuple(r.values()) for r in rows}
    assert got == {
        (H1, "denoise"): (5, 1, 0, 1, pytest.approx(0.2)),
        (H2, "denoise"): (6, 1, 1, 0, pytest.approx(1 / 6, abs=1e-4)),
        (H1, "ivr"): (4, 0, 0, 0, 0),
        (H2, "ivr"): (6, 1, 1, 0, pytest.approx(1 / 6, abs=1e-4)),
        (H1, "lid"): (4, 0, 0, 0, 0),
        (H2, "lid"): (5, 0, 0, 0, 0),
        (None, "triage"): (8, 0, 0, 0, 0),
        (H1, "stt"): (3, 0, 0, 0, 0),
        (H2, "stt"): (5, 2, 1, 1, pytest.approx(0.4)),
        (None, "llm1"): (6, 0, 0, 0, 0),
        (None, "llm2"): (6, 0, 0, 0, 0),
    }


async def test_slowest_files(dash_url: str) -> None:
    rows = await query(
        dash_url,
        "SELECT call_id, attempts, failedAttempts, stages, totalMs, slowestAttemptMs "
        "FROM v_file_durations WHERE batch_id = :b ORDER BY totalMs DESC, call_id LIMIT 5",
        b="dash",
    )
    assert [tuple(r.values()) for r in rows] == [
        ("f07.wav", 6, 2, 5, 3700, 1700),  # two stt attempts of 1.7 s
        ("f05.wav", 7, 0, 7, 2900, 1500),  # stt 1.5 s and llm2 1 s
        ("f03.wav", 8, 1, 7, 1900, 1300),
        ("f04.wav", 7, 0, 7, 1900, 1400),
        ("f01.wav", 8, 1, 7, 1700, 1100),
    ]


async def test_the_progress_view_agrees_with_the_tracker_mid_batch(db_url: str) -> None:
    """Half a batch in: the view's counts give the statuses and the progress milestones the
    tracker computed in Python (batch_status.py) for every stage."""
    await migrate(db_url)
    sc = build_scenario(n=300)
    events = tracked(sc)
    engine = make_engine(db_url)
    try:
        await apply_in_polls(tracker_for(engine), events[: len(events) * 6 // 10], lambda: 200)
    finally:
        await engine.dispose()
    rows = await query(
        db_url,
        "SELECT v.stage, v.stageStatus, v.totalFiles, v.knownFiles, "
        "v.finishedFiles + v.skippedFiles + v.failedFiles AS resolved, "
        "(SELECT MAX(e.processedFiles) FROM batchExecutionLog e WHERE e.batchId = v.batchId "
        "AND e.stage = v.stage AND e.eventType = 'stage_progress') AS logged "
        "FROM v_batch_stage_progress v WHERE v.batchId = :b ORDER BY v.stageOrder",
        b=sc.batch_id,
    )
    statuses = {r["stage"]: r["stageStatus"] for r in rows}
    assert "Complete" in statuses.values() and "InProgress" in statuses.values()
    for r in rows:
        complete = r["resolved"] == r["knownFiles"] == r["totalFiles"]
        assert (r["stageStatus"] == "Complete") == complete, r
        assert (r["logged"] or 0) == r["resolved"] // 100 * 100, r


async def test_batch_summary_counts_the_files_columns(dash_url: str) -> None:
    """`batch_summary` (what the demo and the pipeline tests wait on) on the known batch."""
    engine = make_engine(dash_url)
    try:
        summary = await batch_summary(engine, "dash")
        stopped = await batch_summary(engine, "stopped")
        assert await batch_summary(engine, "nope") is None
    finally:
        await engine.dispose()
    assert summary is not None and stopped is not None
    assert (summary.status, summary.total_files, summary.files_seen) == ("lidDone", 10, 10)
    assert summary.distributed == 10
    assert summary.terminal == {"done": 6, "skipped": 1, "failed": 2}
    assert summary.unfinished == 1 and not summary.finished
    assert [(s.stage, s.status, s.done, s.failed) for s in summary.stages] == [
        ("denoise", "Complete", 9, 1),
        ("ivr", "Complete", 9, 0),
        ("lid", "Complete", 9, 0),
        ("triage", "InProgress", 8, 0),
        ("stt", "InProgress", 6, 1),
        ("llm1", "InProgress", 6, 0),
        ("llm2", "InProgress", 6, 0),
    ]
    assert (stopped.status, stopped.terminal, stopped.unfinished) == (
        "Cancelled",
        {"cancelled": 3},
        0,
    )
    assert stopped.finished
