"""A dead letter `cofi retry` replayed once is not replayed again: the retry's plan skips the
letters a `DeadLetterReplayed` names, pins each mark to its letter's partition, and the
tracker's fold keeps the first replay of each letter. A failed file is sent back once per
failure the same way: the mark names its `FileFailed` record."""

from datetime import UTC, datetime, timedelta

from cli.dead_letters import plan_retry
from cli.replay import plan_replays, replay_marks
from services.tracker.fold import fold
from services.tracker.poll_changes import sha256_of
from shared.events import (
    DeadLetterReplayed,
    FileContext,
    FileStageCompleted,
    encode,
)
from shared.runtime.dead_letters import dead_letter
from shared.topics import Topics
from tests.unit.test_operator_tools import _failure

RAW = encode(
    FileStageCompleted(
        batch_id="b", file_name="a", stage="lid", context=FileContext(audio_uri="u", host="h1")
    )
)


def test_a_letter_already_replayed_is_skipped_and_counted() -> None:
    letters = [
        dead_letter(
            topic="c.triage",
            partition=2,
            offset=o,
            key=b"b/a",
            value=RAW,
            consumer="triage",
            error="x",
        )
        for o in (5, 6)
    ]
    plan = plan_replays(letters, "b", replayed=[("c.triage", 2, 5)])
    assert [r.letter.offset for r in plan.replays] == [6]
    assert plan.already == ["a: already replayed (dead letter c.triage[2]@5)"]
    assert plan.skipped == []
    [mark] = replay_marks(plan.replays, {("c.triage", 2, 6): 4}, "c.failed", "b")
    assert (mark.topic, mark.partition, mark.key) == ("c.failed", 4, b"b/a")
    assert (mark.event.source_topic, mark.event.partition, mark.event.offset) == ("c.triage", 2, 6)


def test_the_tracker_keeps_the_first_replay_of_a_letter() -> None:
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    marks = [
        DeadLetterReplayed(
            source_topic="c.triage",
            partition=2,
            offset=5,
            batch_id="b",
            replayed_at=at + timedelta(seconds=s),
        )
        for s in (0, 60)
    ]
    changes = fold(marks, topic_prefix="c", log_file_start=False)
    assert changes.replays == {sha256_of("c.triage", 2, 5): at.replace(tzinfo=None)}
    assert not changes.empty and not changes.files and not changes.dead_letters


def test_a_failure_is_sent_back_once_and_a_later_failure_of_the_file_again() -> None:
    topics = Topics("c")
    first = plan_retry([_failure("a", "stt", 2)], topics, "b", at=[(1, 40)])
    [mark] = first.marks
    assert [o.topic for o in first.outputs] == ["c.stt.h1"]
    assert (mark.topic, mark.partition, mark.key) == ("c.failed", 1, b"b/a")
    named = (mark.event.source_topic, mark.event.partition, mark.event.offset)
    assert named == ("c.failed", 1, 40)
    # While that retry runs (or after it failed the same way), the failure is already retried.
    again = plan_retry([_failure("a", "stt", 2)], topics, "b", at=[(1, 40)], retried=[named])
    assert (again.outputs, again.marks, again.skipped) == ([], [], [])
    assert again.already == ["a: already retried (failed at stt)"]
    # The retry failed again: a new record, retried again (its attempts continue).
    failures = [_failure("a", "stt", 2), _failure("a", "stt", 4)]
    later = plan_retry(failures, topics, "b", at=[(1, 40), (1, 52)], retried=[named])
    [out] = later.outputs
    assert isinstance(out.event, FileStageCompleted) and out.event.next_attempt == 5
    assert [(m.event.partition, m.event.offset) for m in later.marks] == [(1, 52)]
    assert later.already == []
