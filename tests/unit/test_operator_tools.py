from datetime import UTC, datetime

from cli.dead_letters import cancellation, drain, plan_retry
from cli.replay import plan_replays
from shared.events import (
    Attempt,
    BatchCancelled,
    DeadLetter,
    FileContext,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    HostDrained,
    encode,
)
from shared.runtime.dead_letters import dead_letter
from shared.topics import Topics

TOPICS = Topics("c")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _failure(file: str, stage: str, last_attempt: int, batch: str = "b") -> FileFailed:
    previous = {"denoise": "distribute", "stt": "triage", "llm1": "stt", "triage": "lid"}[stage]
    event = FileStageCompleted(
        batch_id=batch,
        file_name=file,
        stage=previous,
        context=FileContext(audio_uri="u", host="h1"),
    )
    attempts = tuple(
        Attempt(number=n, ok=False, started_at=NOW, host="h1") for n in range(1, last_attempt + 1)
    )
    return FileFailed(
        batch_id=batch,
        file_name=file,
        stage=stage,
        host="h1",
        error_kind="transient",
        error="HTTP 503",
        attempts=attempts,
        input_event=event.model_dump(mode="json"),
    )


def test_retry_sends_each_file_back_to_the_stage_it_failed_at_with_attempts_continuing() -> None:
    plan = plan_retry(
        [_failure("a", "denoise", 5), _failure("b", "llm1", 2), _failure("c", "triage", 1)],
        TOPICS,
        "b",
    )
    routed = {}
    for out in plan.outputs:
        event = out.event
        assert isinstance(event, FileStageCompleted)
        routed[event.file_name] = (out.topic, event.next_attempt)
    assert routed == {"a": ("c.denoise.h1", 6), "b": ("c.llm1", 3), "c": ("c.triage", 2)}


def test_retry_takes_the_latest_failure_and_skips_finished_files_and_other_batches() -> None:
    failures = [
        _failure("a", "denoise", 5),
        _failure("a", "stt", 3),
        _failure("x", "denoise", 1, batch="other"),
        _failure("d", "denoise", 1),
    ]
    plan = plan_retry(failures, TOPICS, "b", finished=["d"])
    [out] = plan.outputs
    assert out.topic == "c.stt.h1"
    assert plan.skipped == ["d: already finished"]
    assert plan_retry(failures, TOPICS, "b", stage="denoise", finished=["d"]).outputs == []


def test_a_failure_with_no_attempts_retries_after_every_number_the_file_used() -> None:
    failure = _failure("a", "stt", 0)
    event = FileStageCompleted.model_validate(failure.input_event)
    context = event.context.model_copy(update={"attempt_high": 6})
    failure = failure.model_copy(
        update={
            "input_event": event.model_copy(update={"context": context}).model_dump(mode="json")
        }
    )
    [out] = plan_retry([failure], TOPICS, "b").outputs
    assert isinstance(out.event, FileStageCompleted) and out.event.next_attempt == 7


def test_a_file_that_failed_distribution_is_uploaded_again() -> None:
    upload = FileUploaded(batch_id="b", file_name="a", audio_uri="u")
    failure = FileFailed(
        batch_id="b",
        file_name="a",
        stage="denoise",
        error_kind="permanent",
        error="not distributed",
        input_event=upload.model_dump(mode="json"),
    )
    [out] = plan_retry([failure], TOPICS, "b").outputs
    assert out.topic == "c.uploads"
    assert out.key == b"b"


def test_cancellation_is_keyed_by_batch_on_the_control_topic() -> None:
    out = cancellation("b7", "wrong files", TOPICS)
    assert (out.topic, out.key) == ("c.control", b"batch:b7")  # apart from drains (host:)
    assert isinstance(out.event, BatchCancelled) and out.event.batch_id == "b7"


def test_retry_reroute_hands_gpu_failures_to_the_distributor_and_leaves_llm_ones() -> None:
    plan = plan_retry(
        [_failure("a", "stt", 4), _failure("b", "llm1", 2)], TOPICS, "b", reroute=True
    )
    by_file = {
        o.event.file_name: o
        for o in plan.outputs
        if isinstance(o.event, FileReassigned | FileStageCompleted)
    }
    assert len(by_file) == len(plan.outputs) == 2
    moved = by_file["a"].event
    assert by_file["a"].topic == "c.uploads" and by_file["a"].key == b"b"
    assert isinstance(moved, FileReassigned)
    assert (moved.stage, moved.from_host, moved.avoid) == ("stt", "h1", ("h1",))
    assert (moved.assignment, moved.attempt_base) == (1, 4)  # the next host counts on from 5
    assert by_file["b"].topic == "c.llm1"  # no host to leave: back to its stage


def test_drain_is_the_latest_word_per_host_on_the_control_topic() -> None:
    out = drain("h2", True, "disk swap", TOPICS)
    assert (out.topic, out.key) == ("c.control", b"host:h2")
    assert isinstance(out.event, HostDrained) and out.event.drained


def test_retry_of_a_distribution_failure_forgets_the_hosts_an_outage_took_away() -> None:
    moved = FileReassigned(
        batch_id="b",
        file_name="a",
        audio_uri="u",
        stage="denoise",
        from_host="h1",
        avoid=("h1", "h2"),
        assignment=2,
        attempt_base=3,
    )
    failure = FileFailed(
        batch_id="b",
        file_name="a",
        stage="distribute",
        error_kind="permanent",
        error="not re-assigned: every GPU host is marked down",
        input_event=moved.model_dump(mode="json"),
    )
    [out] = plan_retry([failure], TOPICS, "b", stage="distribute").outputs
    assert out.topic == "c.uploads" and isinstance(out.event, FileReassigned)
    assert out.event.avoid == ()  # the distributor may pick any host that is up now
    assert (out.event.assignment, out.event.attempt_base) == (2, 3)


def _letter(
    value: bytes, key: bytes | None, offset: int = 7, topic: str = "c.stt.h1"
) -> DeadLetter:
    return dead_letter(
        topic=topic, partition=0, offset=offset, key=key, value=value, consumer="gpu", error="x"
    )


def test_dead_letters_of_the_batch_that_now_decode_are_replayed_byte_for_byte() -> None:
    event = FileStageCompleted(
        batch_id="b", file_name="a", stage="lid", context=FileContext(audio_uri="u", host="h1")
    )
    raw = encode(event)
    letters = [
        _letter(raw, b"b/a"),
        _letter(raw, b"b/a"),  # the same letter read twice is sent once
        _letter(b"not json", b"b/z", offset=8),
        _letter(raw, b"other/a", offset=9),
        _letter(encode(event.model_copy(update={"file_name": "d"})), b"b/d", offset=10),
    ]
    plan = plan_replays(letters, "b", finished=["d"])
    assert [(r.topic, r.key, r.value, r.about) for r in plan.replays] == [
        ("c.stt.h1", b"b/a", raw, "a")
    ]
    assert len(plan.skipped) == 2
    assert plan.skipped[0].startswith("dead letter c.stt.h1[0]@8: still does not decode")
    assert plan.skipped[1] == "d: already finished (dead letter c.stt.h1[0]@10)"
    assert plan_replays(letters, "b", file_name="z").replays == []


def test_an_upload_dead_letter_is_the_batch_by_its_key() -> None:
    upload = FileUploaded(batch_id="b", file_name="a", audio_uri="u")
    [replay] = plan_replays([_letter(encode(upload), b"b", topic="c.uploads")], "b").replays
    assert (replay.topic, replay.key) == ("c.uploads", b"b")
