"""Payloads without call content: named fields blanked before `processing_logs` gets them.

With `PAYLOAD_REDACT_FIELDS=transcript,messages` the tracker stores no transcript: STT's
`transcript` output, the LLM requests' `messages` (which carry it) and the `transcript` of
every file context inside a failure's input are replaced by `"[redacted]"`. The rest of a
payload (hosts, flags, languages, errors) stays, so the dashboards and debugging keep working.
A dead letter's raw bytes that are JSON get the same treatment (the topic keeps the original
for `cofi retry`; bytes that are not JSON stay as they came, for diagnosis). Hiding the
transcript hides the LLM's raw answer too (`shared/redaction.py`). Deterministic, so a replay
writes the same text.
"""

import base64
import json
from dataclasses import replace

from services.tracker.poll_changes import DeadLetterRow, PollChanges
from shared.redaction import redact_payload, redact_value


def redact_changes(changes: PollChanges, fields: frozenset[str]) -> None:
    """Blank `fields` in every attempt's payloads and dead letter's raw JSON of one poll."""
    if not fields:
        return
    for key, letter in changes.dead_letters.items():
        changes.dead_letters[key] = redact_letter(letter, fields)
    for key, row in changes.attempts.items():
        changes.attempts[key] = replace(
            row,
            input_payload=redact_payload(row.input_payload, fields),
            output_payload=redact_payload(row.output_payload, fields),
        )


def redact_letter(letter: DeadLetterRow, fields: frozenset[str]) -> DeadLetterRow:
    raw = base64.b64decode(letter.value_b64)
    if not any(f'"{name}"'.encode() in raw for name in fields):
        return letter
    try:
        value = json.loads(raw)
    except ValueError:
        return letter
    redacted = json.dumps(redact_value(value, fields), ensure_ascii=False, separators=(",", ":"))
    return replace(
        letter,
        value_b64=base64.b64encode(redacted.encode()).decode(),
        error=f"{letter.error} (raw bytes redacted: PAYLOAD_REDACT_FIELDS)",
    )
