"""Every message on every topic, defined once (pydantic v2, versioned by `v`).

A message on a stage's input topic *is* the previous stage's file-completed event: it carries
the result of the stage just finished and the context that later stages need.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.stages import EventStage


def utcnow() -> datetime:
    return datetime.now(UTC)


# Bounds on what comes from outside (the upload system, a model's answer, an operator): a
# value past one is a validation error naming the field, so the file fails for its own
# content (or the message is dead-lettered with its raw bytes), never an endless timeout, an
# overflow, or an output Kafka refuses. Each bound shows in the AsyncAPI document (pydantic's
# JSON schema: maxLength, maximum).
MAX_FILE_NAME = 4096  # characters, as the tracker stores them (services/tracker/storable.py)
MAX_URI = 8192
MAX_CALL_S = 86_400.0  # a day: longer is no phone call; it would also steer timeouts and order
MAX_TRANSCRIPT = 100_000  # characters: about ten hours of speech, well under Kafka's message limit
MAX_HOST = 255  # the tracker's `ip` column
MAX_LANGUAGE = 35  # the longest BCP 47 tag
MAX_HOSTS = 64  # entries in a list of hosts a file left

FileName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_FILE_NAME,
        description=f"The file's name in its batch, 1 to {MAX_FILE_NAME} characters",
    ),
]
AudioUri = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URI,
        description=f"Where the audio is, at most {MAX_URI} characters; it must pass the "
        "allowlist (`AUDIO_URI_ALLOWED_SCHEMES`, `AUDIO_URI_ALLOWED_ROOTS`)",
    ),
]
CallSeconds = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_CALL_S,
        allow_inf_nan=False,
        description=f"The call's length in seconds, if known: finite, 0 to {MAX_CALL_S:.0f}; "
        "cofi balances GPU hosts by it, orders a host's calls by it and sizes timeouts by it",
    ),
]
HostName = Annotated[
    str, Field(min_length=1, max_length=MAX_HOST, description=f"A GPU host, ≤ {MAX_HOST} chars")
]
HostList = Annotated[
    tuple[HostName, ...],
    Field(max_length=MAX_HOSTS, description=f"GPU hosts, at most {MAX_HOSTS}"),
]


class Event(BaseModel):
    # cache_strings="keys": pydantic's JSON parser otherwise caches every short string value
    # (file names, URIs), which never repeat: memory a service never reuses (bench/FINDINGS.md,
    # "Memory").
    model_config = ConfigDict(frozen=True, extra="ignore", cache_strings="keys")
    v: Literal[1] = 1


class FileUploaded(Event):
    """The upload system: one audio file of a batch is ready."""

    type: Literal["FileUploaded"] = "FileUploaded"
    batch_id: str = Field(min_length=1, max_length=64)
    file_name: FileName
    audio_uri: AudioUri
    uploaded_at: datetime = Field(default_factory=utcnow)
    # The call's length in seconds, if the upload system knows it (shared.call_audio's
    # convention); the distributor balances hosts by it. Optional: older producers omit it.
    duration_s: CallSeconds | None = None


class BatchClosed(Event):
    """The upload system: the batch holds exactly `file_count` files."""

    type: Literal["BatchClosed"] = "BatchClosed"
    batch_id: str = Field(min_length=1, max_length=64)
    file_count: int = Field(ge=0)
    closed_at: datetime = Field(default_factory=utcnow)


class Attempt(Event):
    """One call to a model API (or one routing decision) for one file at one stage."""

    number: int = Field(ge=1)
    host: str | None = None
    ok: bool
    error_kind: Literal["transient", "permanent"] | None = None
    error: str | None = None
    started_at: datetime
    duration_ms: float = 0.0
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None


class TriageDecision(Event):
    route: Literal["stt", "skip"]
    rule: str | None = None
    reason: str = ""


class FileContext(Event):
    """What later stages need to know about a file; grows as stages finish."""

    audio_uri: AudioUri
    host: HostName | None = None
    denoised_uri: AudioUri | None = None
    is_ivr: bool | None = None
    language: str | None = Field(
        default=None,
        max_length=MAX_LANGUAGE,
        description=f"The language lid found (a tag, at most {MAX_LANGUAGE} characters)",
    )
    duration_s: CallSeconds | None = None
    triage: TriageDecision | None = None
    transcript: str | None = Field(
        default=None,
        max_length=MAX_TRANSCRIPT,
        description=f"What stt heard, at most {MAX_TRANSCRIPT} characters (a longer answer "
        "fails the file at stt, named): it rides in every later event",
    )
    llm1: dict[str, Any] | None = None
    llm2: dict[str, Any] | None = None
    # Failover: how many times the file was re-assigned to another host (0: never), and the
    # attempt number its stages count from on this host (the highest it had used anywhere),
    # so attempts on the new host get new identities and processing_logs keeps both hosts'.
    assignment: int = Field(default=0, ge=0)
    attempt_base: int = Field(default=0, ge=0)
    # The highest attempt number any stage used so far (kept by every stage that finishes).
    attempt_high: int = Field(default=0, ge=0)
    # Hosts the file failed over from: a re-assignment never sends it back to one.
    left_hosts: HostList = ()


class FileStageCompleted(Event):
    """A file finished `stage`; published to the next stage's input topic."""

    type: Literal["FileStageCompleted"] = "FileStageCompleted"
    batch_id: str = Field(min_length=1, max_length=64)
    file_name: FileName
    stage: EventStage
    context: FileContext
    attempts: tuple[Attempt, ...] = ()
    completed_at: datetime = Field(default_factory=utcnow)
    # The number the next stage gives its first attempt: 1, or more when `cofi retry` sends a
    # dead-lettered file back, so its new attempts get new identities in processing_logs.
    next_attempt: int = Field(default=1, ge=1)


class FileReassigned(Event):
    """A GPU host is dead or drained: its consumer hands the file back to the distributor
    (on the uploads topic), which assigns it to a host not in `avoid`; it restarts at
    denoise there. `attempts` are the calls made at `stage` before giving up."""

    type: Literal["FileReassigned"] = "FileReassigned"
    batch_id: str = Field(min_length=1, max_length=64)
    file_name: FileName
    audio_uri: AudioUri
    stage: EventStage
    from_host: HostName | None = None
    duration_s: CallSeconds | None = None
    avoid: HostList = ()
    assignment: int = Field(ge=1)
    attempt_base: int = Field(ge=0)
    reason: str = ""
    attempts: tuple[Attempt, ...] = ()
    requested_at: datetime = Field(default_factory=utcnow)


class FileFailed(Event):
    """A stage gave up on a file: its last word, with every attempt and the input it had."""

    type: Literal["FileFailed"] = "FileFailed"
    batch_id: str
    file_name: str
    # "distribute": its audio_uri is not allowed; the file failed before any stage, so the
    # batch can still complete (`cofi retry` uploads it again).
    stage: EventStage
    host: str | None = None
    error_kind: Literal["transient", "permanent", "deadline"]
    error: str
    attempts: tuple[Attempt, ...] = ()
    input_event: dict[str, Any]
    failed_at: datetime = Field(default_factory=utcnow)


class DeadLetter(Event):
    """A message no consumer could decode, kept with its raw bytes (base64)."""

    type: Literal["DeadLetter"] = "DeadLetter"
    source_topic: str
    partition: int
    offset: int
    consumer: str
    error: str
    key_b64: str | None = None
    value_b64: str
    at: datetime = Field(default_factory=utcnow)


class DeadLetterReplayed(Event):
    """`cofi retry` sent a record of the dead-letter topic back, once. Written on the
    dead-letter topic, in the partition of the record it names (so it always follows it):
    - a dead letter, named by its origin as `DeadLetter` does: its raw bytes were replayed;
      the tracker stamps the letter's row `replayedAt`;
    - a `FileFailed`, named by its own record here (the dead-letter topic, its partition and
      offset): the failed stage's input was sent again (no row to stamp).
    A later `cofi retry` skips what one names; a new failure of the file is a new record."""

    type: Literal["DeadLetterReplayed"] = "DeadLetterReplayed"
    source_topic: str
    partition: int
    offset: int
    batch_id: str
    replayed_at: datetime = Field(default_factory=utcnow)


class HostDrained(Event):
    """An operator drained a GPU host (`cofi drain`), or undid it (`drained=False`): its
    consumers hand every file back for re-assignment (compacted control topic, key
    `host:<ip>`)."""

    type: Literal["HostDrained"] = "HostDrained"
    host: HostName
    drained: bool = True
    reason: str = ""
    at: datetime = Field(default_factory=utcnow)


class BatchCancelled(Event):
    """An operator cancelled the batch: stages stop starting work for it (compacted topic)."""

    type: Literal["BatchCancelled"] = "BatchCancelled"
    batch_id: str = Field(min_length=1, max_length=64)
    reason: str = ""
    cancelled_at: datetime = Field(default_factory=utcnow)


UploadEvent = Annotated[FileUploaded | BatchClosed | FileReassigned, Field(discriminator="type")]
ControlEvent = Annotated[BatchCancelled | HostDrained, Field(discriminator="type")]
# Every event on every topic: what the tracker folds and a dead-letter replay decodes.
PipelineEvent = (
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
AnyEvent = Annotated[PipelineEvent, Field(discriminator="type")]

# A union has no model config of its own: its adapter is told the same (see `Event`).
KEYS_ONLY = ConfigDict(cache_strings="keys")
upload_event: TypeAdapter[FileUploaded | BatchClosed | FileReassigned] = TypeAdapter(
    UploadEvent, config=KEYS_ONLY
)
control_event: TypeAdapter[BatchCancelled | HostDrained] = TypeAdapter(
    ControlEvent, config=KEYS_ONLY
)
any_event: TypeAdapter[PipelineEvent] = TypeAdapter(AnyEvent, config=KEYS_ONLY)


def encode(event: Event) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


def cancel_key(batch_id: str) -> bytes:
    """Key of a batch's cancel on the compacted control topic (a key space of its own)."""
    return f"batch:{batch_id}".encode()


def drain_key(host: str) -> bytes:
    """Key of a host's drain on the compacted control topic: the latest word per host."""
    return f"host:{host}".encode()


def file_key(batch_id: str, file_name: str) -> bytes:
    """Partition key of a file on stage topics: its messages stay in order."""
    return f"{batch_id}/{file_name}".encode()
