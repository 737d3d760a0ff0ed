from datetime import UTC, datetime

from cli.dead_letters import cancellation, drain, plan_retry
from shared.events import (
    Attempt,
    FileContext,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    HostDrained,
)
from shared.topics import Topics

TOPICS = Topics("c")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _failure(file: str, stage: str, last_attempt: int, batch: str = "b") -> FileFailed:
    previous = {"denoise": "distribute", "stt": "triage", "llm1": "stt", "triage": "lid"}[stage]
    event = FileStageCompleted(
        batch_id=batch,
        file_name=file,
        stage=previous,  # type: ignore[arg-type]
        context=FileContext(audio_uri="u", host="h1"),
    )
    attempts = tuple(
        Attempt(number=n, ok=False, started_at=NOW, host="h1") for n in range(1, last_attempt + 1)
    )
    return FileFailed(
        batch_id=batch,
        file_name=file,
        stage=stage,
        host="h1",  # type: ignore[arg-type]
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
    assert (out.topic, out.key) == ("c.control", b"b7")
    assert out.event.type == "BatchCancelled"


def test_retry_reroute_hands_gpu_failures_to_the_distributor_and_leaves_llm_ones() -> None:
    plan = plan_retry(
        [_failure("a", "stt", 4), _failure("b", "llm1", 2)], TOPICS, "b", reroute=True
    )
    by_file = {o.event.file_name: o for o in plan.outputs}  # type: ignore[union-attr]
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
