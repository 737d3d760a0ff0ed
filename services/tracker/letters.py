"""Dead letters as `deadLetters` rows, and the end they give the file they are about: pure.

A dead letter is a record a consumer could not use (undecodable, refused, a handler that
raised). When its raw bytes still decode to a batch id and file name, or its key names them
(`<batch>/<file>` on the stage topics), the file it was about gets an end: failed at the
stage that reads the topic, with the letter's error as the reason, so its batch completes
with the failure counted. A file that finishes anyway later still ends done or skipped
(they outrank failed).
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple

from services.tracker import file_events
from services.tracker.poll_changes import (
    FILE_ERROR,
    TRACKER_CONSUMER,
    DeadLetterRow,
    FileChange,
    LogRow,
    naive_utc,
    sha256_of,
)
from services.tracker.resolutions import failed_from
from services.tracker.storable import (
    MAX_BATCH_ID,
    MAX_ERROR,
    MAX_FILE_NAME,
    MAX_SHORT,
    short_text,
)
from shared.events import DeadLetter
from shared.pipeline import BY_NAME, PIPELINE, index

# The stage that reads a topic, by the topic's first name after the prefix: the first stage
# reads the uploads, every other one the topic named after it (per host or not).
STAGE_OF_TOPIC_HEAD: Final[dict[str, str]] = {
    "uploads": PIPELINE[0].name,
    **{s.name: s.name for s in PIPELINE[1:]},
    "done": "done",
    "failed": "failed",
}


class RecordMeta(NamedTuple):
    """Where a record was read; identifies it for dead letters and its time for their rows.
    (A tuple: one is made for every record, and a tuple is made faster than a dataclass.)"""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None = None


@dataclass(frozen=True)
class Undecodable:
    meta: RecordMeta
    value: bytes | None
    error: str


def dead_letter_row(ev: DeadLetter, topic_prefix: str) -> DeadLetterRow:
    try:
        raw: bytes | None = base64.b64decode(ev.value_b64, validate=True)
    except (binascii.Error, ValueError):
        raw = None
    try:
        key = base64.b64decode(ev.key_b64, validate=True) if ev.key_b64 is not None else None
    except (binascii.Error, ValueError):
        key = None
    batch_id, file_name = _ids(raw, key)
    return DeadLetterRow(
        letter_key=sha256_of(ev.source_topic, ev.partition, ev.offset),
        source_topic=short_text(ev.source_topic, MAX_SHORT),
        source_partition=ev.partition,
        source_offset=ev.offset,
        stage=stage_of_topic(ev.source_topic, topic_prefix),
        consumer=short_text(ev.consumer, MAX_SHORT),
        error=short_text(ev.error, MAX_ERROR),
        batch_id=batch_id,
        file_name=file_name,
        key_b64=ev.key_b64,
        value_b64=ev.value_b64,
        created_at=naive_utc(ev.at),
    )


def undecodable_row(u: Undecodable, topic_prefix: str) -> DeadLetterRow:
    """A record the tracker itself cannot read. Keyed like the owning stage's DeadLetter for
    the same record, so the two never make two rows; topics no stage reads (done, failed)
    are covered too."""
    batch_id, file_name = _ids(u.value, u.meta.key)
    meta = u.meta
    return DeadLetterRow(
        letter_key=sha256_of(meta.topic, meta.partition, meta.offset),
        source_topic=short_text(meta.topic, MAX_SHORT),
        source_partition=meta.partition,
        source_offset=meta.offset,
        stage=stage_of_topic(meta.topic, topic_prefix),
        consumer=TRACKER_CONSUMER,
        error=u.error,
        batch_id=batch_id,
        file_name=file_name,
        key_b64=base64.b64encode(meta.key).decode() if meta.key is not None else None,
        value_b64=base64.b64encode(u.value or b"").decode(),
        created_at=datetime.fromtimestamp(meta.timestamp_ms / 1000, UTC).replace(tzinfo=None),
    )


def letter_failure(row: DeadLetterRow) -> tuple[FileChange, LogRow] | None:
    """The end a dead letter gives the file it names: failed at the stage reading its topic
    (none for a letter that names no file, or read from `done` or `failed`)."""
    if row.batch_id is None or row.file_name is None or row.stage not in BY_NAME:
        return None
    at = row.created_at
    error = short_text(f"dead letter ({row.source_topic}): {row.error}", MAX_ERROR)
    change = FileChange(
        row.batch_id,
        row.file_name,
        created_at=at,
        updated_at=at,
        terminal_state="failed",
        finished_at=at,
        failed_stage=row.stage,
        failed_error=error,
        failed_at=at,
        resolutions=failed_from(at, index(row.stage)),
        applied_events=frozenset({file_events.dead_letter(row.stage)}),
    )
    # A row per letter: the tracker's own reading of a poison record and its stage's dead
    # letter about it say different things, and poison records on several hosts' topics can
    # name the same file; one row for them all would be first-applied-wins.
    own = (TRACKER_CONSUMER,) if row.consumer == TRACKER_CONSUMER else ()
    log = LogRow(
        event_key=sha256_of(
            row.batch_id, row.stage, FILE_ERROR, row.file_name, row.letter_key, *own
        ),
        batch_id=row.batch_id,
        stage=row.stage,
        event_type=FILE_ERROR,
        created_at=at,
        file_name=row.file_name,
        status=error,
    )
    return change, log


def stage_of_topic(topic: str, topic_prefix: str) -> str | None:
    """The stage that reads a topic: `cofi.ivr.127.0.0.2` is ivr's input."""
    if not topic.startswith(topic_prefix + "."):
        return None
    head = topic[len(topic_prefix) + 1 :].split(".", 1)[0]
    return STAGE_OF_TOPIC_HEAD.get(head)


def _ids(raw: bytes | None, key: bytes | None) -> tuple[str | None, str | None]:
    """Best effort: the batch and file a poison message was about, from its JSON, else from
    its key (`<batch>/<file>` on the stage topics)."""
    batch_id, file_name = _ids_from_raw(raw)
    if (batch_id is None or file_name is None) and key:
        try:
            text = key.decode()
        except UnicodeDecodeError:
            return batch_id, file_name
        head, slash, tail = text.partition("/")
        if slash and batch_id in (None, head):
            batch_id, file_name = _valid(head, tail)
    return batch_id, file_name


def _ids_from_raw(raw: bytes | None) -> tuple[str | None, str | None]:
    if not raw:
        return None, None
    try:
        obj = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        return None, None
    if not isinstance(obj, dict):
        return None, None
    return _valid(obj.get("batch_id"), obj.get("file_name"))


def _valid(batch_id: object, file_name: object) -> tuple[str | None, str | None]:
    return (
        batch_id if isinstance(batch_id, str) and 0 < len(batch_id) <= MAX_BATCH_ID else None,
        file_name if isinstance(file_name, str) and 0 < len(file_name) <= MAX_FILE_NAME else None,
    )
