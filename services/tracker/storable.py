"""The events as the tracker reads them: the shared models, narrowed to what its columns hold.

An event that cannot be stored is a poison message for the tracker: writing it would fail the
transaction forever. Pydantic refuses it while decoding, with the field and the limit in its
message, so the tracker keeps it as a dead letter instead; and a valid event costs no second
walk over its fields. Each model here is a subclass of the shared one with the same name, so
the fold sees the shared types, every other rule of the shared models still applies, and
pydantic's messages for other poison read as they did.
"""

from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import Field, TypeAdapter

from shared import events

MAX_BATCH_ID: Final = 64
MAX_FILE_NAME: Final = 4096
MAX_SHORT: Final = 255
# Errors and reasons are stored whole up to this: 4 bytes a character (utf8mb4) still fits a
# TEXT column (65,535 bytes), so a strict-mode MariaDB never refuses the write.
MAX_ERROR: Final = 16_000
MAX_URI: Final = 8192
MAX_INT: Final = 2**31 - 1
MAX_BIGINT: Final = 2**63 - 1
# A naive time is taken as UTC, as the store does; pydantic compares in UTC. Defaults are the
# shared models' (an overridden field would otherwise lose its default).
MIN_TIME: Final = datetime(1971, 1, 1, tzinfo=UTC)
MAX_TIME: Final = datetime(9999, 1, 1, tzinfo=UTC)

BatchId = Annotated[str, Field(min_length=1, max_length=MAX_BATCH_ID)]
FileName = Annotated[str, Field(min_length=1, max_length=MAX_FILE_NAME)]
Uri = Annotated[str, Field(min_length=1, max_length=MAX_URI)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
Time = Annotated[datetime, Field(ge=MIN_TIME, le=MAX_TIME)]
Duration = Annotated[float, Field(allow_inf_nan=False, ge=-1e300, le=1e300)]


class Attempt(events.Attempt):
    number: Annotated[int, Field(ge=1, le=MAX_INT)]
    started_at: Time
    duration_ms: Duration = 0.0


class FileContext(events.FileContext):
    audio_uri: Uri


class FileUploaded(events.FileUploaded):
    file_name: FileName
    audio_uri: Uri
    uploaded_at: Time = Field(default_factory=events.utcnow)


class BatchClosed(events.BatchClosed):
    file_count: Count
    closed_at: Time = Field(default_factory=events.utcnow)


class FileStageCompleted(events.FileStageCompleted):
    file_name: FileName
    context: FileContext
    attempts: tuple[Attempt, ...] = ()
    completed_at: Time = Field(default_factory=events.utcnow)


class FileFailed(events.FileFailed):
    batch_id: BatchId
    file_name: FileName
    attempts: tuple[Attempt, ...] = ()
    failed_at: Time = Field(default_factory=events.utcnow)


class DeadLetter(events.DeadLetter):
    partition: Count
    offset: Annotated[int, Field(ge=0, le=MAX_BIGINT)]
    at: Time = Field(default_factory=events.utcnow)


class DeadLetterReplayed(events.DeadLetterReplayed):
    partition: Count
    offset: Annotated[int, Field(ge=0, le=MAX_BIGINT)]
    batch_id: BatchId
    replayed_at: Time = Field(default_factory=events.utcnow)


class BatchCancelled(events.BatchCancelled):
    cancelled_at: Time = Field(default_factory=events.utcnow)


class FileReassigned(events.FileReassigned):
    batch_id: BatchId
    file_name: FileName
    audio_uri: Uri
    assignment: Count
    attempt_base: Count
    attempts: tuple[Attempt, ...] = ()
    requested_at: Time = Field(default_factory=events.utcnow)


class HostDrained(events.HostDrained):
    at: Time = Field(default_factory=events.utcnow)


StorableEvent = (
    FileUploaded
    | BatchClosed
    | FileStageCompleted
    | FileFailed
    | DeadLetter
    | DeadLetterReplayed
    | BatchCancelled
    | FileReassigned
    | HostDrained
)

storable_event: TypeAdapter[StorableEvent] = TypeAdapter(
    Annotated[StorableEvent, Field(discriminator="type")], config=events.KEYS_ONLY
)


def short_text(text: str, limit: int) -> str:
    """Text that fits its column, whole; past the column's bound, the head that fits and a
    mark that says how long the text was (never cut without saying, never a write that a
    strict-mode database refuses). The whole text stays in the event on its topic."""
    if len(text) <= limit:
        return text
    mark = f" [cut: {len(text)} characters, the first {{}} kept]"
    keep = limit - len(mark.format(limit))
    return text[:keep] + mark.format(keep)


def short_opt(text: str | None) -> str | None:
    return None if text is None else short_text(text, MAX_SHORT)
