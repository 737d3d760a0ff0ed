"""Payloads without call content: named fields blanked before `processing_logs` gets them.

With `PAYLOAD_REDACT_FIELDS=transcript,messages` the tracker stores no transcript: STT's
`transcript` output, the LLM requests' `messages` (which carry it) and the `transcript` of
every file context inside a failure's input are replaced by `"[redacted]"`. The rest of a
payload (hosts, flags, languages, errors) stays, so the dashboards and debugging keep working.
Deterministic, so a replay writes the same text.
"""

import json
from dataclasses import replace
from typing import Any

from services.tracker.poll_changes import PollChanges

REDACTED = "[redacted]"


def redact_value(value: Any, fields: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if k in fields and v is not None else redact_value(v, fields)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_value(v, fields) for v in value]
    return value


def redact_payload(text: str | None, fields: frozenset[str]) -> str | None:
    """A stored payload (JSON text) with `fields` blanked at any depth."""
    if text is None or not fields or not any(f'"{name}"' in text for name in fields):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(redact_value(value, fields), ensure_ascii=False, separators=(",", ":"))


def redact_changes(changes: PollChanges, fields: frozenset[str]) -> None:
    """Blank `fields` in every attempt's payloads of one poll, in place."""
    if not fields:
        return
    for key, row in changes.attempts.items():
        changes.attempts[key] = replace(
            row,
            input_payload=redact_payload(row.input_payload, fields),
            output_payload=redact_payload(row.output_payload, fields),
        )
