"""The tracker's decoding: what it stores is the shared event as sent; what it cannot store
(a field past its column, an undecodable record, a tombstone off the control topic) is a
dead letter, never a crash."""

import base64
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from aiokafka.structs import ConsumerRecord

from services.tracker import storable
from services.tracker.fold import RecordMeta, TrackedEvent, Undecodable, decode, fold
from services.tracker.poll_changes import sha256_of
from services.tracker.service import Tracker, TrackerOptions
from shared.events import (
    BatchCancelled,
    BatchClosed,
    DeadLetter,
    Event,
    FileContext,
    FileFailed,
    encode,
)
from tests.unit.test_tracker_fold import (
    META,
    at,
    attempt,
    completed,
    failed,
    only_file,
    run,
    uploaded,
)


def test_undecodable_records_become_dead_letter_rows() -> None:
    bad = decode(META, b'{"type": "FileUploaded", "batch_id": "b1"}')
    assert isinstance(bad, Undecodable)
    assert isinstance(decode(META, None), Undecodable)
    assert isinstance(decode(META, b"\xff\xfe"), Undecodable)
    (row,) = run(bad).dead_letters.values()
    assert (row.stage, row.consumer, row.batch_id) == ("done", "tracker", "b1")
    assert row.letter_key == sha256_of("cofi.done", 0, 7)


def decodes_as_sent(event: Event) -> bool:
    decoded = decode(META, encode(event))
    return isinstance(decoded, type(event)) and decoded.model_dump() == event.model_dump()


def poison_reason(event: object) -> str:
    decoded = decode(META, encode(event))  # type: ignore[arg-type]
    assert isinstance(decoded, Undecodable), f"{event!r} was decoded"
    return decoded.error


def test_unstorable_events_are_poison_too() -> None:
    long_batch = FileFailed(
        batch_id="b" * 65,
        file_name="a",
        stage="ivr",
        error_kind="permanent",
        error="x",
        input_event={},
    )
    assert "FileFailed.batch_id" in poison_reason(long_batch)
    assert "at most 64 characters" in poison_reason(long_batch)
    assert decodes_as_sent(uploaded(0, file="x" * 1000))
    long_name = uploaded(0).model_copy(update={"file_name": "x" * 4097})
    assert "FileUploaded.file_name" in poison_reason(long_name)
    year_one = uploaded(0).model_copy(update={"uploaded_at": datetime(1, 1, 1, tzinfo=UTC)})
    assert "FileUploaded.uploaded_at" in poison_reason(year_one)
    # Within 1971 in its own zone, before it in UTC: refused like the UTC time it is stored as.
    east = timezone(timedelta(hours=2))
    early = uploaded(0).model_copy(update={"uploaded_at": datetime(1971, 1, 1, 1, tzinfo=east)})
    assert "greater than or equal to 1971" in poison_reason(early)
    huge = BatchClosed(batch_id="b1", file_count=2**40)
    assert "BatchClosed.file_count" in poison_reason(huge)
    inf = completed("stt", 1, attempts=(attempt(1).model_copy(update={"duration_ms": 1e309}),))
    assert "attempts.0.duration_ms" in poison_reason(inf)
    many = completed("stt", 1, attempts=(attempt(2**31),))
    assert "attempts.0.number" in poison_reason(many)
    no_uri = completed("stt", 1).model_copy(
        update={"context": FileContext.model_construct(audio_uri="", host="127.0.0.2")}
    )
    assert "context.audio_uri" in poison_reason(no_uri)
    far = DeadLetter(
        source_topic="cofi.done", partition=0, offset=2**63, consumer="c", error="e", value_b64=""
    )
    assert "DeadLetter.offset" in poison_reason(far)
    assert decodes_as_sent(completed("stt", 1, attempts=(attempt(1),)))


def test_a_decoded_event_is_the_shared_type_with_every_field_as_sent() -> None:
    for event in (
        uploaded(0),
        BatchClosed(batch_id="b1", file_count=3, closed_at=at(1)),
        completed("triage", 2, route="skip", attempts=(attempt(1),)),
        failed("stt", 3, attempts=(attempt(1, ok=False),)),
        BatchCancelled(batch_id="b1", reason="r", cancelled_at=at(4)),
    ):
        assert decodes_as_sent(event)


def test_the_tracker_models_keep_the_shared_defaults() -> None:
    """A field narrowed for its column must still be optional where the shared model's is."""
    for model in (
        storable.Attempt,
        storable.FileContext,
        storable.FileUploaded,
        storable.BatchClosed,
        storable.FileStageCompleted,
        storable.FileFailed,
        storable.DeadLetter,
        storable.BatchCancelled,
    ):
        shared = model.__mro__[1].model_fields  # type: ignore[attr-defined]
        for name, field in model.model_fields.items():
            assert field.is_required() == shared[name].is_required(), (model, name)
            assert field.default == shared[name].default, (model, name)
            assert field.default_factory is shared[name].default_factory, (model, name)
    minimal = b'{"type": "BatchCancelled", "batch_id": "b1"}'
    assert isinstance(decode(META, minimal), BatchCancelled)


def test_dead_letter_events_are_recorded_with_their_stage() -> None:
    raw = b'{"batch_id": "b1", "file_name": "a.wav", "oops": 1}'
    letter = DeadLetter(
        source_topic="cofi.ivr.127.0.0.2",
        partition=1,
        offset=42,
        consumer="gpu_stage",
        error="undecodable",
        value_b64=base64.b64encode(raw).decode(),
        at=at(1),
    )
    (row,) = run(letter).dead_letters.values()
    assert (row.stage, row.batch_id, row.file_name) == ("ivr", "b1", "a.wav")
    # The same record undecodable for the tracker lands on the same row.
    meta = RecordMeta("cofi.ivr.127.0.0.2", 1, 42, 0)
    assert row.letter_key == next(iter(run(decode(meta, b"{")).dead_letters))
    # It gives the file it names an end (issue 19, item 3), in its batch.
    assert only_file(run(letter)).terminal_state == "failed"


def test_a_cancel_touches_its_batch_with_the_first_cancellation() -> None:
    cancels = [
        BatchCancelled(batch_id="b1", reason="later", cancelled_at=at(60)),
        BatchCancelled(batch_id="b1", reason="first", cancelled_at=at(5)),
        BatchCancelled(batch_id="b1", reason="first", cancelled_at=at(5)),
    ]
    for order in itertools.permutations(cancels):
        touch = fold(order, topic_prefix="cofi", log_file_start=False).batches["b1"]
        assert (touch.cancelled_at, touch.cancel_reason) == (at(5).replace(tzinfo=None), "first")
        assert touch.total_files is None
    long_reason = BatchCancelled(batch_id="b1", reason="x" * 10_000, cancelled_at=at(1))
    assert decodes_as_sent(long_reason)  # a long reason is kept whole, not refused
    touch = fold([long_reason], topic_prefix="cofi", log_file_start=False).batches["b1"]
    assert touch.cancel_reason == "x" * 10_000
    huge = BatchCancelled(batch_id="b1", reason="x" * 40_000, cancelled_at=at(1))
    touch = fold([huge], topic_prefix="cofi", log_file_start=False).batches["b1"]
    reason = touch.cancel_reason
    assert reason is not None and len(reason) == 16_000  # past TEXT: marked, never bare
    assert reason.endswith("[cut: 40000 characters, the first 15954 kept]"), reason[-60:]


async def test_a_tombstone_on_the_control_topic_is_skipped_not_dead_lettered() -> None:
    written: list[Sequence[TrackedEvent]] = []

    class Recording(Tracker):
        async def apply_events(self, events: Sequence[TrackedEvent]) -> None:
            written.append(events)

    tracker = Recording(None, TrackerOptions(topic_prefix="cofi"))  # type: ignore[arg-type]
    records = [
        ConsumerRecord("cofi.control", 0, 3, 0, 0, b"b1", None, None, 0, 0, ()),
        ConsumerRecord("cofi.done", 0, 3, 0, 0, b"b1", None, None, 0, 0, ()),
    ]
    await tracker.apply_records(records)
    (events,) = written
    assert len(events) == 1 and isinstance(events[0], Undecodable)
    assert events[0].meta.topic == "cofi.done"  # a value-less record elsewhere is poison
