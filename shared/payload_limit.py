"""Bounding what an event carries: attempt payloads above a size give way to a marker.

Attempts carry full requests and responses (an LLM attempt carries the transcript), so an
hour-long call retried a few times could approach Kafka's message limit. The marker keeps
the payload's size, digest and top-level field names, never its text: the stages trim before
the tracker redacts (`PAYLOAD_REDACT_FIELDS`), so a head of the text would carry the start of
a transcript past redaction. The file's context still carries the transcript.
"""

import hashlib
import json
from typing import Any, TypeVar

from shared.events import Attempt, Event, FileFailed, FileStageCompleted, encode

TRIMMED = "_cofi_trimmed"
E = TypeVar("E", bound=Event)


def trim_payload(payload: dict[str, Any] | None, limit: int) -> dict[str, Any] | None:
    if payload is None or payload.get(TRIMMED):
        return payload
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    size = len(raw.encode())
    if size <= limit:
        return payload
    return {
        TRIMMED: True,
        "bytes": size,
        "sha256": hashlib.sha256(raw.encode()).hexdigest(),
        "fields": sorted(payload)[:50],
    }


def _trim_attempt(attempt: Attempt, limit: int) -> Attempt:
    request, response = trim_payload(attempt.request, limit), trim_payload(attempt.response, limit)
    if request is attempt.request and response is attempt.response:
        return attempt
    return attempt.model_copy(update={"request": request, "response": response})


def _trim_attempt_dicts(attempts: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return [
        a | {k: trim_payload(a.get(k), limit) for k in ("request", "response") if a.get(k)}
        for a in attempts
    ]


def bounded(event: E, limit: int) -> E:
    """The event with every attempt payload over `limit` bytes (as JSON) trimmed."""
    if not isinstance(event, FileStageCompleted | FileFailed):
        return event
    update: dict[str, Any] = {"attempts": tuple(_trim_attempt(a, limit) for a in event.attempts)}
    if isinstance(event, FileFailed) and isinstance(event.input_event.get("attempts"), list):
        inner = event.input_event["attempts"]
        update["input_event"] = event.input_event | {"attempts": _trim_attempt_dicts(inner, limit)}
    return event.model_copy(update=update)


def encode_bounded(event: Event, limit: int) -> bytes:
    """`encode`, trimming attempt payloads only when the whole event exceeds `limit`."""
    value = encode(event)
    return value if len(value) <= limit else encode(bounded(event, limit))
