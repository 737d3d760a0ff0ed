"""A late upload is decided in its batch's uploads order, not in the order the tracker reads
the topics (issue 19 item 8): a late file whose stage events are read before a file of the
batch was uploaded must not take that file's place."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.tracker.engine import make_engine
from services.tracker.migrate import migrate
from services.tracker.service import Tracker, TrackerOptions
from shared.events import BatchClosed, Event, FileContext, FileStageCompleted, FileUploaded
from tests.tracker_scenario import dump

BATCH = "batch-late"
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def _upload(name: str, seconds: int) -> FileUploaded:
    return FileUploaded(
        batch_id=BATCH,
        file_name=name,
        audio_uri=f"s3://a/{name}",
        uploaded_at=T0 + timedelta(seconds=seconds),
    )


def _routed(name: str, seconds: int) -> FileStageCompleted:
    return FileStageCompleted(
        batch_id=BATCH,
        file_name=name,
        stage="distribute",
        context=FileContext(audio_uri=f"s3://a/{name}", host="127.0.0.2"),
        completed_at=T0 + timedelta(seconds=seconds),
    )


async def _tables(url: str, polls: list[list[Event]]) -> Any:
    await migrate(url)
    engine = make_engine(url)
    try:
        tracker = Tracker(engine, TrackerOptions(topic_prefix="cofi", log_file_start=True))
        for poll in polls:
            await tracker.apply_events(poll)  # type: ignore[arg-type]
        return await dump(engine)
    finally:
        await engine.dispose()


def test_a_late_file_read_first_does_not_take_the_place_of_a_file_uploaded_before_it(
    tmp_path: Path,
) -> None:
    close = BatchClosed(batch_id=BATCH, file_count=2, closed_at=T0)
    a, b, late = _upload("a.wav", 1), _upload("b.wav", 2), _upload("late.wav", 3)
    events: list[Event] = [close, a, b, late, _routed("a.wav", 4), _routed("b.wav", 5)]
    late_routed = _routed("late.wav", 6)
    in_order = [[*events, late_routed]]
    # The late file's routing (another partition) is read first, then the uploads one by one.
    late_first: list[list[Event]] = [[late_routed], [close], [a], [b], [late], events[4:]]
    reference = asyncio.run(_tables(f"sqlite+aiosqlite:///{tmp_path / 'ref.db'}", in_order))
    shuffled = asyncio.run(_tables(f"sqlite+aiosqlite:///{tmp_path / 'run.db'}", late_first))
    # The stages this batch has not completed keep provisional milestones, stamped when they
    # were first logged (ARCHITECTURE.md, "The log is the source of truth"): every other row
    # must be the same.
    for tables in (reference, shuffled):
        tables["batchExecutionLog"] = [r for r in tables["batchExecutionLog"] if r[3] is not None]
    assert shuffled == reference
    files = reference["fileDistribution"]
    names = {row for f in files for row in f if row in ("a.wav", "b.wav", "late.wav")}
    assert names == {"a.wav", "b.wav"}
    (letter,) = reference["deadLetters"]
    assert "late.wav" in letter and "closed with its 2 files" in str(letter)
