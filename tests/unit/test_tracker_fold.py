"""The tracker's fold: events → merged row changes (pure, no I/O)."""

import base64
import itertools
from datetime import UTC, datetime, timedelta

from services.tracker.fold import (
    RecordMeta,
    fold,
)
from services.tracker.letters import stage_of_topic
from services.tracker.poll_changes import FileChange, PollChanges, file_key, sha256_of
from shared.events import (
    Attempt,
    BatchClosed,
    DeadLetter,
    FileContext,
    FileFailed,
    FileStageCompleted,
    FileUploaded,
    TriageDecision,
    encode,
)

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
META = RecordMeta("cofi.done", 0, 7, int(T0.timestamp() * 1000))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def attempt(number: int, ok: bool = True, seconds: float = 0) -> Attempt:
    return Attempt(
        number=number,
        host="127.0.0.2",
        ok=ok,
        started_at=at(seconds),
        error=None if ok else "HTTP 503",
        error_kind=None if ok else "transient",
        duration_ms=12.5,
        request={"file": "a.wav"},
        response={"ok": ok},
    )


def completed(
    stage: str,
    seconds: float,
    file: str = "a.wav",
    route: str | None = None,
    attempts: tuple[Attempt, ...] = (),
) -> FileStageCompleted:
    triage = TriageDecision(route=route, rule="short-call", reason="under 5s") if route else None
    return FileStageCompleted(
        batch_id="b1",
        file_name=file,
        stage=stage,
        context=FileContext(audio_uri=f"s3://audio/{file}", host="127.0.0.2", triage=triage),
        attempts=attempts,
        completed_at=at(seconds),
    )


def failed(
    stage: str, seconds: float, file: str = "a.wav", attempts: tuple[Attempt, ...] = ()
) -> FileFailed:
    return FileFailed(
        batch_id="b1",
        file_name=file,
        stage=stage,
        host="127.0.0.2",
        error_kind="permanent",
        error="HTTP 422: corrupt audio",
        attempts=attempts,
        input_event={"context": {"host": "127.0.0.2"}},
        failed_at=at(seconds),
    )


def uploaded(seconds: float, file: str = "a.wav") -> FileUploaded:
    return FileUploaded(
        batch_id="b1", file_name=file, audio_uri=f"s3://audio/{file}", uploaded_at=at(seconds)
    )


def run(*events: object, log_file_start: bool = False) -> PollChanges:
    return fold(events, topic_prefix="cofi", log_file_start=log_file_start)  # type: ignore[arg-type]


def only_file(changes: PollChanges) -> FileChange:
    assert len(changes.files) == 1
    return next(iter(changes.files.values()))


def test_a_polls_events_for_one_file_merge_into_one_change() -> None:
    changes = run(
        uploaded(0), completed("distribute", 1), completed("denoise", 2), completed("ivr", 3)
    )
    f = only_file(changes)
    assert f.flags == {"denoiseDone", "ivrDone"}
    assert (f.ip, f.audio_uri) == ("127.0.0.2", "s3://audio/a.wav")
    assert (f.created_at, f.updated_at) == (at(0).replace(tzinfo=None), at(3).replace(tzinfo=None))
    assert f.terminal_state is None
    assert changes.batches["b1"].first_at == at(0).replace(tzinfo=None)
    assert changes.batches["b1"].total_files is None


def test_llm2_is_done_and_triage_skip_is_skipped() -> None:
    done = only_file(run(completed("llm2", 9)))
    assert (done.terminal_state, done.flags) == ("done", frozenset({"llm2Done"}))
    assert done.finished_at == at(9).replace(tzinfo=None)
    skipped = only_file(run(completed("triage", 5, route="skip")))
    assert (skipped.terminal_state, skipped.triage_route, skipped.triage_rule) == (
        "skipped",
        "skip",
        "short-call",
    )
    routed = only_file(run(completed("triage", 5, route="stt")))
    assert (routed.terminal_state, routed.triage_route) == (None, "stt")


def test_done_wins_over_failed_in_any_order() -> None:
    events = [failed("ivr", 3), completed("ivr", 10), completed("llm2", 20)]
    results = {only_file(run(*perm)) for perm in itertools.permutations(events)}
    assert len(results) == 1  # the merge is order-independent
    f = results.pop()
    assert f.terminal_state == "done"
    assert f.finished_at == at(20).replace(tzinfo=None)
    assert f.failed_stage == "ivr"  # the failure stays on record
    assert f.flags == {"ivrDone", "llm2Done"}


def test_merge_is_idempotent_and_commutative() -> None:
    a = only_file(run(uploaded(0), failed("lid", 4)))
    b = only_file(run(completed("triage", 6, route="skip"), completed("denoise", 2)))
    assert a.merge(a) == a
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(b) == a.merge(b)


def test_later_failure_wins_the_failure_columns() -> None:
    f = only_file(run(failed("stt", 30), failed("ivr", 3)))
    assert (f.terminal_state, f.failed_stage) == ("failed", "stt")


def test_every_attempt_is_one_row_with_a_deterministic_key() -> None:
    event = completed("stt", 5, attempts=(attempt(1, ok=False), attempt(2, ok=False), attempt(3)))
    changes = run(event, event)  # a redelivery in the same poll
    rows = sorted(changes.attempts.values(), key=lambda r: r.attempt)
    assert [(r.attempt, r.status) for r in rows] == [(1, "failure"), (2, "failure"), (3, "success")]
    assert rows[0].attempt_key == sha256_of("b1", "a.wav", "stt", 1)
    assert rows[0].error_message == "HTTP 503" and rows[0].error_kind == "transient"
    assert rows[2].input_payload == '{"file":"a.wav"}'
    assert run(event).attempts.keys() == changes.attempts.keys()


def test_a_failure_logs_its_attempts_and_one_file_error() -> None:
    changes = run(failed("denoise", 2, attempts=(attempt(1, ok=False),)))
    assert [r.status for r in changes.attempts.values()] == ["failure"]
    (log,) = changes.logs.values()
    assert (log.event_type, log.stage, log.file_name, log.status) == (
        "file_error",
        "denoise",
        "a.wav",
        "HTTP 422: corrupt audio",
    )
    assert only_file(changes).ip == "127.0.0.2"  # from the failed stage's input event


def test_a_failure_without_attempts_still_gets_a_processing_log_row() -> None:
    (row,) = run(failed("llm1", 8)).attempts.values()
    assert (row.attempt, row.status, row.stage_name) == (0, "failure", "llm1")


def test_file_start_rows_only_when_enabled() -> None:
    events = (uploaded(0), completed("distribute", 1), completed("triage", 5, route="skip"))
    assert not run(*events).logs
    logs = run(*events, log_file_start=True).logs.values()
    assert sorted((r.stage, r.event_type) for r in logs) == [
        ("denoise", "file_start"),
        ("distribute", "file_start"),
    ]  # skipped: no stt start


def test_the_first_close_decides_the_batch_size() -> None:
    # Every close of a batch is on its uploads partition: "first" is the same in any
    # interleaving of the topics, and a second submit cannot reopen the batch (issue 19, 11).
    changes = run(
        BatchClosed(batch_id="b1", file_count=3, closed_at=at(9)),
        BatchClosed(batch_id="b1", file_count=5, closed_at=at(4)),
    )
    touch = changes.batches["b1"]
    assert (touch.total_files, touch.closed_at) == (3, at(9).replace(tzinfo=None))
    assert [count for count, _ in touch.closes] == [3, 5]
    assert not changes.files


def test_a_dead_letter_about_a_known_file_gives_it_an_end() -> None:
    raw = base64.b64encode(encode(completed("denoise", 1))).decode()
    letter = DeadLetter(
        source_topic="cofi.ivr.127.0.0.2",
        partition=0,
        offset=3,
        consumer="gpu_stage",
        error="OverflowError: duration_s",
        value_b64=raw,
        at=at(2),
    )
    changes = run(letter)
    f = only_file(changes)
    assert (f.batch_id, f.file_name, f.terminal_state, f.failed_stage) == (
        "b1",
        "a.wav",
        "failed",
        "ivr",
    )
    assert f.failed_error is not None and "OverflowError" in f.failed_error
    assert [r.event_type for r in changes.logs.values()] == ["file_error"]
    # Bytes that are not JSON: the key still names the file on a stage topic.
    keyed = letter.model_copy(
        update={"value_b64": "bm90IGpzb24=", "key_b64": base64.b64encode(b"b1/b.wav").decode()}
    )
    assert only_file(run(keyed)).key == ("b1", "b.wav")
    # A letter read from `done` names no stage to fail the file at.
    assert not run(letter.model_copy(update={"source_topic": "cofi.done"})).files


def test_a_huge_key_is_kept_whole() -> None:
    key = base64.b64encode(b"k" * 70 * 1024).decode()
    letter = DeadLetter(
        source_topic="cofi.uploads",
        partition=0,
        offset=1,
        consumer="distributor",
        error="undecodable",
        key_b64=key,
        value_b64="bm90IGpzb24=",
    )
    (row,) = run(letter).dead_letters.values()
    assert row.key_b64 == key
    short = letter.model_copy(update={"key_b64": "YWJj"})
    (row,) = run(short).dead_letters.values()
    assert row.key_b64 == "YWJj"


def test_stage_of_topic() -> None:
    assert stage_of_topic("cofi.uploads", "cofi") == "distribute"
    assert stage_of_topic("cofi.stt.10.0.0.7", "cofi") == "stt"
    assert stage_of_topic("cofi.x.failed", "cofi.x") == "failed"
    assert stage_of_topic("other.uploads", "cofi") is None


def test_file_key_is_sha256_of_the_name() -> None:
    assert file_key("a.wav") == "bc30c538c410e224b945ab8441b7a5db824dd8cb5d421c6c5042dd1bb1542747"
