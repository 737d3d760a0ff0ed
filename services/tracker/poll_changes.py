"""The rows the tracker writes, as plain values, and the keys that make writes idempotent.

Everything here is pure. A row's key is a sha256 of its natural identity, so the same event
always yields the same key and a redelivered or replayed event is a no-op in the database.
"""

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final

from services.tracker.resolutions import Resolutions, merge_resolutions
from shared.pipeline import PIPELINE

# Terminal states, weakest first: a file dead-lettered and retried later can still succeed,
# so done/skipped win over failed whatever order the events arrive in.
TERMINAL_RANK: Final[dict[str, int]] = {"cancelled": 1, "failed": 2, "skipped": 3, "done": 4}

# batchExecutionLog event types (the seed's EventLogger).
STAGE_START = "stage_start"
STAGE_PROGRESS = "stage_progress"
STAGE_COMPLETE = "stage_complete"
FILE_ERROR = "file_error"
FILE_START = "file_start"
# The `consumer` of the dead letters the tracker writes itself (a record it cannot read, an
# upload it rejects).
TRACKER_CONSUMER: Final = "tracker"
# The `sourceTopic` of a rejected upload's dead letter (it has no offset of its own).
REJECTED = "rejected-upload"


# One encoder for every key: `json.dumps` with options builds a new one per call.
_KEY_JSON: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def sha256_of(*parts: object) -> str:
    """Key of a tuple of values; JSON keeps ("a/b", "c") and ("a", "b/c") apart."""
    return hashlib.sha256(_KEY_JSON.encode(parts).encode()).hexdigest()


def file_key(file_name: str) -> str:
    """sha256 hex of a file name: names may be 1,000 characters, too long for a unique key."""
    return hashlib.sha256(file_name.encode()).hexdigest()


def naive_utc(value: datetime) -> datetime:
    """The database stores UTC without a zone; a naive event time is taken as UTC."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def terminal_rank(state: str | None) -> int:
    return TERMINAL_RANK.get(state, 0) if state is not None else 0


def _first(a: str | None, b: str | None) -> str | None:
    return a if a is not None else b


def _min_time(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return min(a, b)


def _triage_order(c: "FileChange") -> tuple[int, int, str, str, str]:
    """The later triage decision sorts higher; equal orders fall back on the decision itself,
    so the join does not depend on the order of events."""
    if c.triage_route is None:
        return (-2, 0, "", "", "")
    return (
        -1 if c.triage_assignment is None else c.triage_assignment,
        c.triage_attempt or 0,
        c.triage_route,
        c.triage_rule or "",
        c.triage_reason or "",
    )


@dataclass(frozen=True)
class FileChange:
    """What a poll's events say about one file; `merge` is the same rule the upsert applies."""

    batch_id: str
    file_name: str
    created_at: datetime
    updated_at: datetime
    audio_uri: str | None = None
    ip: str | None = None
    # Which assignment `ip` comes from: a failover's re-assignment (higher) wins.
    assignment: int = 0
    flags: frozenset[str] = frozenset()
    terminal_state: str | None = None
    finished_at: datetime | None = None
    failed_stage: str | None = None
    failed_error: str | None = None
    failed_at: datetime | None = None
    triage_route: str | None = None
    triage_rule: str | None = None
    triage_reason: str | None = None
    # Which triage decided (its assignment, then its attempt; 0 for a later stage's copy of
    # the decision): the latest decides, whatever order the events come in.
    triage_assignment: int | None = None
    triage_attempt: int | None = None
    resolutions: Resolutions = ()
    # The events of the file applied so far (file_events.py); None for a row written before
    # the tracker kept them.
    applied_events: frozenset[str] | None = frozenset()

    @property
    def key(self) -> tuple[str, str]:
        return (self.batch_id, self.file_name)

    def merge(self, other: "FileChange") -> "FileChange":
        """Join of two changes: commutative, associative and idempotent for the fields that
        matter (flags only set, terminal state by rank, set-once values kept)."""
        terminal, finished_at = self.terminal_state, self.finished_at
        if terminal_rank(other.terminal_state) > terminal_rank(terminal):
            terminal, finished_at = other.terminal_state, other.finished_at
        elif other.terminal_state is not None and other.terminal_state == terminal:
            finished_at = _min_time(finished_at, other.finished_at)
        failure = self
        if other.failed_at is not None and (
            self.failed_at is None
            or (other.failed_at, other.failed_stage or "", other.failed_error or "")
            > (self.failed_at, self.failed_stage or "", self.failed_error or "")
        ):
            failure = other
        triage = self if _triage_order(self) >= _triage_order(other) else other
        ip = self
        # One assignment has one host; a later assignment wins (a tie, which should not
        # happen, goes to the smaller host, so the join does not depend on event order).
        if other.ip is not None and (
            self.ip is None or (other.assignment, self.ip) > (self.assignment, other.ip)
        ):
            ip = other
        return FileChange(
            batch_id=self.batch_id,
            file_name=self.file_name,
            created_at=min(self.created_at, other.created_at),
            updated_at=max(self.updated_at, other.updated_at),
            audio_uri=_first(self.audio_uri, other.audio_uri),
            ip=ip.ip,
            assignment=ip.assignment,
            flags=self.flags | other.flags,
            terminal_state=terminal,
            finished_at=finished_at,
            failed_stage=failure.failed_stage,
            failed_error=failure.failed_error,
            failed_at=failure.failed_at,
            triage_route=triage.triage_route,
            triage_rule=triage.triage_rule,
            triage_reason=triage.triage_reason,
            triage_assignment=triage.triage_assignment,
            triage_attempt=triage.triage_attempt,
            resolutions=merge_resolutions(self.resolutions, other.resolutions),
            applied_events=(
                None
                if self.applied_events is None or other.applied_events is None
                else self.applied_events | other.applied_events
            ),
        )

    def cancelled_at(self, at: datetime) -> "FileChange":
        """The file in a batch cancelled at `at`: ended cancelled unless it ended otherwise
        (the earliest cancel's time, whichever cancel came first)."""
        if self.terminal_state is None or (
            self.terminal_state == "cancelled" and self.finished_at != at
        ):
            return replace(self, terminal_state="cancelled", finished_at=at)
        return self


@dataclass(frozen=True)
class AttemptRow:
    """One `processing_logs` row: one model call (or routing decision) of one file."""

    attempt_key: str
    call_id: str
    batch_id: str
    stage_name: str
    status: str  # "success" | "failure"
    error_message: str | None
    input_payload: str | None
    output_payload: str | None
    attempt: int
    host: str | None
    error_kind: str | None
    started_at: datetime
    duration_ms: float


@dataclass(frozen=True)
class LogRow:
    """One `batchExecutionLog` row (a milestone or a per-file event)."""

    event_key: str
    batch_id: str
    stage: str
    event_type: str
    created_at: datetime
    file_name: str | None = None
    status: str | None = None
    total_files: int | None = None
    processed_files: int | None = None
    failed_files: int | None = None
    skipped_files: int | None = None


@dataclass(frozen=True)
class DeadLetterRow:
    """One `deadLetters` row: a record nobody could decode, keyed by where it was read."""

    letter_key: str
    source_topic: str
    source_partition: int
    source_offset: int
    stage: str | None
    consumer: str
    error: str
    batch_id: str | None
    file_name: str | None
    key_b64: str | None
    value_b64: str
    created_at: datetime


@dataclass(frozen=True)
class UploadSeen:
    """A `FileUploaded` as its batch's uploads partition ordered it (poll_plan.py
    `decide_uploads` accepts or rejects it in that order)."""

    file_name: str
    uploaded_at: datetime
    audio_uri: str | None  # None: an upload record that is poison
    after_close: bool  # a close of the batch came before it in this poll


@dataclass
class BatchTouch:
    """What a poll says about a batch itself: when it was seen and whether it was closed."""

    first_at: datetime
    last_at: datetime
    total_files: int | None = None
    closed_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    closes: list[tuple[int, datetime]] = field(default_factory=list)  # in partition order
    uploads: list[UploadSeen] = field(default_factory=list)  # in partition order

    def see(self, at: datetime) -> None:
        self.first_at = min(self.first_at, at)
        self.last_at = max(self.last_at, at)

    def close(self, file_count: int, at: datetime) -> None:
        # The first close decides: every close of a batch is on its uploads partition (keyed
        # by batch id), so "first" is the same in any interleaving of the topics. A later
        # close cannot reopen a batch with another count (poll_plan.py `reject_closes`).
        if self.total_files is None:
            self.total_files, self.closed_at = file_count, at
        self.closes.append((file_count, at))

    def cancel(self, at: datetime, reason: str) -> None:
        # Several cancels of one batch: the first (the smaller reason on a tie).
        first = (self.cancelled_at, self.cancel_reason or "")
        if self.cancelled_at is None or (at, reason) < first:
            self.cancelled_at, self.cancel_reason = at, reason


@dataclass
class PollChanges:
    """Everything one poll changes, merged per row before anything touches the database."""

    files: dict[tuple[str, str], FileChange] = field(default_factory=dict)
    attempts: dict[str, AttemptRow] = field(default_factory=dict)
    logs: dict[str, LogRow] = field(default_factory=dict)
    dead_letters: dict[str, DeadLetterRow] = field(default_factory=dict)
    batches: dict[str, BatchTouch] = field(default_factory=dict)
    # letterKey -> when `cofi retry` replayed that dead letter (the first replay in order)
    replays: dict[str, datetime] = field(default_factory=dict)

    def touch(self, batch_id: str, at: datetime) -> BatchTouch:
        batch = self.batches.get(batch_id)
        if batch is None:
            batch = self.batches[batch_id] = BatchTouch(first_at=at, last_at=at)
        else:
            batch.see(at)
        return batch

    def add_file(self, change: FileChange) -> None:
        self.touch(change.batch_id, change.updated_at)
        if change.created_at != change.updated_at:  # one event's change has one time
            self.touch(change.batch_id, change.created_at)
        old = self.files.get(change.key)
        self.files[change.key] = change if old is None else old.merge(change)

    def add_attempt(self, row: AttemptRow) -> None:
        # The first wins, as INSERT IGNORE does.
        self.attempts.setdefault(row.attempt_key, row)

    def add_log(self, row: LogRow) -> None:
        self.logs.setdefault(row.event_key, row)

    def add_dead_letter(self, row: DeadLetterRow) -> None:
        """The owning stage's letter about a record outranks the tracker's own reading of it
        (whichever is read first; store.py replaces a stored one the same way)."""
        old = self.dead_letters.get(row.letter_key)
        if old is None or (old.consumer == TRACKER_CONSUMER != row.consumer):
            self.dead_letters[row.letter_key] = row

    def reject_close(self, batch_id: str, file_count: int, at: datetime, reason: str) -> None:
        """Keep, as a dead letter, a close that came after the batch's first with another
        `file_count`."""
        value = {"batch_id": batch_id, "file_count": file_count, "closed_at": at.isoformat()}
        key = sha256_of(REJECTED, batch_id, "close", file_count, at)
        self.add_dead_letter(_rejection(key, reason, batch_id, None, value, at))

    def reject_upload(self, upload: UploadSeen, batch_id: str, reason: str) -> None:
        """Drop everything this poll says about a file that must not join its batch (an
        upload beyond the batch's `file_count` after it closed) and keep why, as a dead
        letter keyed by the file and stamped with the upload's own time and URI (no offset:
        the poll merged its events), so any split into polls writes the same letter."""
        self.drop_file((batch_id, upload.file_name))
        value = {"batch_id": batch_id, "file_name": upload.file_name, "audio_uri": upload.audio_uri}
        letter_key = sha256_of(REJECTED, batch_id, upload.file_name)
        self.add_dead_letter(
            _rejection(letter_key, reason, batch_id, upload.file_name, value, upload.uploaded_at)
        )

    def drop_file(self, key: tuple[str, str]) -> None:
        """Forget the file's row, attempts and per-file log rows of this poll."""
        self.files.pop(key, None)
        self.attempts = {k: a for k, a in self.attempts.items() if (a.batch_id, a.call_id) != key}
        self.logs = {k: r for k, r in self.logs.items() if (r.batch_id, r.file_name) != key}

    @property
    def empty(self) -> bool:
        return (
            not (self.files or self.attempts or self.logs or self.dead_letters or self.batches)
            and not self.replays
        )


def _rejection(
    letter_key: str,
    reason: str,
    batch_id: str,
    file_name: str | None,
    value: Mapping[str, object],
    at: datetime,
) -> DeadLetterRow:
    """A record the tracker itself refused (no topic offset: the poll merged its events)."""
    return DeadLetterRow(
        letter_key=letter_key,
        source_topic=REJECTED,
        source_partition=-1,
        source_offset=-1,
        stage=PIPELINE[0].name,
        consumer=TRACKER_CONSUMER,
        error=reason,
        batch_id=batch_id,
        file_name=file_name,
        key_b64=None,
        value_b64=base64.b64encode(json.dumps(value).encode()).decode(),
        created_at=at,
    )
