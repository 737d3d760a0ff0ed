"""Retention and redaction of call content: the pure parts."""

from datetime import UTC, datetime, timedelta

import pytest

from services.tracker.retention import cutoff_for, parse_age
from services.tracker.settings import TrackerSettings
from shared.redaction import REDACTED, redact_payload, redact_value


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("30d", timedelta(days=30)),
        ("30", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("3600s", timedelta(hours=1)),
        ("1.5d", timedelta(hours=36)),
    ],
)
def test_ages_parse(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "soon", "-3d", "0d", "3w", "d"])
def test_bad_ages_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"30d|more than zero"):
        parse_age(text)


def test_the_cutoff_is_the_tables_naive_utc() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert cutoff_for(timedelta(days=30), now) == datetime(2026, 11, 2, 12, 0)


def test_redaction_blanks_named_fields_at_any_depth_and_keeps_the_rest() -> None:
    value = {
        "transcript": "secret",
        "input_event": {"context": {"transcript": "secret", "language": "en"}},
        "messages": [{"role": "user", "content": "secret"}],
        "list": [{"transcript": None}],
    }
    fields = frozenset({"transcript", "messages"})
    assert redact_value(value, fields) == {
        "transcript": REDACTED,
        "input_event": {"context": {"transcript": REDACTED, "language": "en"}},
        "messages": REDACTED,
        "list": [{"transcript": None}],
    }


def test_payload_text_is_rewritten_only_when_it_holds_a_named_field() -> None:
    fields = frozenset({"transcript"})
    assert redact_payload('{"a":1}', fields) == '{"a":1}'
    assert redact_payload(None, fields) is None
    assert redact_payload('not json but "transcript"', fields) == 'not json but "transcript"'
    assert redact_payload('{"transcript":"ça va"}', fields) == '{"transcript":"[redacted]"}'
    assert redact_payload('{"transcript":"x"}', frozenset()) == '{"transcript":"x"}'


def test_tracker_settings_read_retention_and_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TrackerSettings().payload_retention_days == 0
    monkeypatch.setenv("PAYLOAD_RETENTION_DAYS", "30")
    monkeypatch.setenv("PAYLOAD_REDACT_FIELDS", "transcript, messages")
    s = TrackerSettings()
    assert s.payload_retention_days == 30
    assert s.payload_redact_fields == ["transcript", "messages"]


def test_a_dead_letters_json_bytes_are_redacted_and_say_so() -> None:
    import base64
    import json
    from datetime import datetime

    from services.tracker.poll_changes import DeadLetterRow
    from services.tracker.redaction import redact_letter
    from shared.redaction import fields_to_redact

    def letter(raw: bytes) -> DeadLetterRow:
        return DeadLetterRow(
            "k", "cofi.llm1", 0, 7, "llm1", "llm_stage", "undecodable", "b", "f.wav", None,
            base64.b64encode(raw).decode(), datetime(2026, 12, 6),
        )  # fmt: skip

    fields = fields_to_redact(["transcript"])
    assert fields == {"transcript", "raw_answer"}
    raw = json.dumps({"context": {"transcript": "card 4111"}, "raw_answer": "card 4111"}).encode()
    redacted = redact_letter(letter(raw), fields)
    stored = base64.b64decode(redacted.value_b64)
    assert b"4111" not in stored and json.loads(stored)["context"]["transcript"] == REDACTED
    assert "redacted" in redacted.error
    not_json = letter(b"\x00 not json with transcript")
    assert redact_letter(not_json, fields) == not_json
