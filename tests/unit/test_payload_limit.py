"""Events stay well under Kafka's message limit, even for an hour-long call retried often."""

from datetime import UTC, datetime

import pytest

from shared.events import Attempt, FileContext, FileFailed, FileStageCompleted, encode
from shared.payload_limit import TRIMMED, bounded, encode_bounded

pytestmark = pytest.mark.unit

LIMIT = 16_384
# An hour of speech at ~150 words a minute: about 55 kB of transcript.
TRANSCRIPT = " ".join(f"word{i % 997}" for i in range(9_000))


def _attempt(number: int, ok: bool) -> Attempt:
    messages = [{"role": "user", "content": f"<transcript>{TRANSCRIPT}</transcript>"}]
    return Attempt(
        number=number,
        host="llm",
        ok=ok,
        error_kind=None if ok else "transient",
        error=None if ok else "HTTP 503",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        request={"messages": messages},
        response={"summary": "short"} if ok else None,
    )


def _hour_long_llm1_event() -> FileStageCompleted:
    return FileStageCompleted(
        batch_id="b",
        file_name="long.wav",
        stage="llm1",
        context=FileContext(audio_uri="file:///a/long.wav", transcript=TRANSCRIPT),
        attempts=tuple(_attempt(n, ok=n == 5) for n in range(1, 6)),
    )


def test_an_hour_long_call_retried_five_times_stays_well_under_one_mebibyte() -> None:
    event = _hour_long_llm1_event()
    assert len(encode(event)) > 300_000  # what it would weigh untrimmed
    failed = FileFailed(
        batch_id="b",
        file_name="long.wav",
        stage="llm2",
        error_kind="transient",
        error="HTTP 503",
        attempts=event.attempts,
        input_event=event.model_dump(mode="json"),
    )
    for value in (encode_bounded(event, LIMIT), encode_bounded(failed, LIMIT)):
        assert len(value) < 256 * 1024


def test_a_trimmed_payload_keeps_a_marker_with_its_size_and_digest() -> None:
    trimmed = bounded(_hour_long_llm1_event(), LIMIT)
    request = trimmed.attempts[0].request
    assert request is not None and request[TRIMMED] is True
    assert request["bytes"] > LIMIT and len(request["sha256"]) == 64
    assert trimmed.attempts[4].response == {"summary": "short"}  # small payloads stay whole
    assert trimmed.context.transcript == TRANSCRIPT  # later stages still have it


def test_small_events_are_encoded_untouched() -> None:
    event = FileStageCompleted(
        batch_id="b", file_name="f", stage="denoise", context=FileContext(audio_uri="u")
    )
    assert encode_bounded(event, LIMIT) == encode(event)


def test_a_trimmed_payload_keeps_no_text_of_the_call() -> None:
    from shared.payload_limit import TRIMMED, trim_payload

    secret = "my card number is 4111 1111 1111 1111 " * 100
    marker = trim_payload({"transcript": secret, "words": 800}, limit=1024)
    assert marker is not None and marker[TRIMMED] is True
    assert marker["fields"] == ["transcript", "words"]
    assert "4111" not in str(marker)
