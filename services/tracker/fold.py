"""Decode records and fold a poll's events into row changes: pure functions, no I/O.

The fold merges everything a poll says about one file into one `FileChange` first, so the
store writes one row per file per poll whatever the number of events.
"""

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from pydantic_core import to_json

from services.tracker import file_events
from services.tracker.letters import RecordMeta as RecordMeta  # the records' side, re-exported
from services.tracker.letters import Undecodable as Undecodable
from services.tracker.letters import dead_letter_row, letter_failure, undecodable_row
from services.tracker.poll_changes import (
    FILE_ERROR,
    FILE_START,
    AttemptRow,
    DeadLetterRow,
    FileChange,
    LogRow,
    PollChanges,
    UploadSeen,
    naive_utc,
    sha256_of,
)
from services.tracker.resolutions import failed_from, finished_through
from services.tracker.storable import MAX_ERROR, MAX_URI, short_opt, short_text, storable_event
from shared.events import (
    Attempt,
    BatchCancelled,
    BatchClosed,
    DeadLetter,
    DeadLetterReplayed,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    HostDrained,
    PipelineEvent,
)
from shared.pipeline import PIPELINE, TRIAGE, following, index, next_stage
from shared.status import Status

NO_FLAGS: Final[frozenset[str]] = frozenset()
FLAGS_OF_STAGE: Final = {
    s.name: frozenset({s.flag_column}) for s in PIPELINE if s.flag_column is not None
}
# A file that finishes the last stage is done.
LAST_STAGE: Final = PIPELINE[-1].name
Decoded = PipelineEvent
TrackedEvent = Decoded | Undecodable


def decode(meta: RecordMeta, value: bytes | None) -> TrackedEvent:
    """An event, or why the record is poison (undecodable, or a value outside its column).
    Never raises."""
    if value is None:
        return Undecodable(meta, None, "undecodable: record has no value")
    try:
        return storable_event.validate_json(value)
    except Exception as exc:  # a pydantic error, or anything else the bytes provoke
        return Undecodable(meta, value, f"undecodable: {short_text(str(exc), 1000)}")


def fold(events: Iterable[TrackedEvent], *, topic_prefix: str, log_file_start: bool) -> PollChanges:
    changes = PollChanges()
    for event in events:
        if isinstance(event, FileUploaded):
            _uploaded(changes, event, log_file_start)
        elif isinstance(event, BatchClosed):
            at = naive_utc(event.closed_at)
            changes.touch(event.batch_id, at).close(event.file_count, at)
        elif isinstance(event, FileStageCompleted):
            _stage_completed(changes, event, log_file_start)
        elif isinstance(event, FileFailed):
            _failed(changes, event)
        elif isinstance(event, DeadLetter):
            _letter(changes, dead_letter_row(event, topic_prefix))
        elif isinstance(event, DeadLetterReplayed):
            # Written in the letter's own partition, after it: its row exists by now. The
            # first replay of a letter stamps it, in any split of the topics into polls. One
            # naming a retried `FileFailed` matches no letter's row and stamps nothing.
            key = sha256_of(event.source_topic, event.partition, event.offset)
            changes.replays.setdefault(key, naive_utc(event.replayed_at))
        elif isinstance(event, FileReassigned):
            _reassigned(changes, event)
        elif isinstance(event, HostDrained):
            pass  # for the stages; the tables see where the drained host's files go next
        elif isinstance(event, BatchCancelled):
            # The store marks the batch's unfinished files cancelled, including files that
            # only show up later: stages stop starting them, so no other event will come.
            at = naive_utc(event.cancelled_at)
            changes.touch(event.batch_id, at).cancel(at, short_text(event.reason, MAX_ERROR))
        else:
            row = undecodable_row(event, topic_prefix)
            _letter(changes, row, upload=event.meta.topic == f"{topic_prefix}.uploads")
    return changes


def _letter(changes: PollChanges, row: DeadLetterRow, *, upload: bool = False) -> None:
    """Keep the letter; the file it names, if any, ends failed (letters.py). A poison record
    the tracker reads on the uploads partition is also the file's upload: it counts toward
    the batch's size in that partition's order, as a readable upload would."""
    changes.add_dead_letter(row)
    failure = letter_failure(row)
    if failure is not None:
        change, log = failure
        if upload:
            events = (change.applied_events or frozenset()) | _UPLOADED
            change = replace(change, applied_events=events)
            batch = changes.touch(change.batch_id, change.created_at)
            seen = UploadSeen(change.file_name, change.created_at, None, bool(batch.closes))
            batch.uploads.append(seen)
        changes.add_file(change)
        changes.add_log(log)


_UPLOADED: Final = frozenset({file_events.UPLOAD})


def _uploaded(changes: PollChanges, ev: FileUploaded, log_file_start: bool) -> None:
    at = naive_utc(ev.uploaded_at)
    batch = changes.touch(ev.batch_id, at)
    batch.uploads.append(UploadSeen(ev.file_name, at, ev.audio_uri, bool(batch.closes)))
    changes.add_file(
        FileChange(
            ev.batch_id, ev.file_name, at, at, audio_uri=ev.audio_uri, applied_events=_UPLOADED
        )
    )
    if log_file_start:
        changes.add_log(_file_start(ev.batch_id, "distribute", ev.file_name, at, 0))


def _reassigned(changes: PollChanges, ev: FileReassigned) -> None:
    """The host's attempts before it handed the file back; `ip` moves with the next host's
    events (their higher `assignment`)."""
    at = naive_utc(ev.requested_at)
    changes.add_file(
        FileChange(
            ev.batch_id,
            ev.file_name,
            at,
            at,
            audio_uri=ev.audio_uri,
            applied_events=frozenset({file_events.hand_back(ev.assignment, ev.stage)}),
        )
    )
    for attempt in ev.attempts:
        changes.add_attempt(_attempt_row(ev.batch_id, ev.file_name, ev.stage, attempt))


def _stage_completed(changes: PollChanges, ev: FileStageCompleted, log_file_start: bool) -> None:
    at = naive_utc(ev.completed_at)
    ctx = ev.context
    triage = ctx.triage
    terminal: str | None = None
    if ev.stage == LAST_STAGE:
        terminal = "done"
    elif ev.stage == TRIAGE and triage is not None and next_stage(TRIAGE, triage.route) is None:
        terminal = "skipped"  # routed to `done`
    applied = {file_events.stage_event(ctx.assignment, ev.stage)}
    first = min((a.number for a in ev.attempts), default=0)
    if first > ctx.attempt_base + 1:
        # It ran from an input `cofi retry` sent back: wait for that input's event too.
        applied.add(file_events.rerun(ctx.assignment, ev.stage, first))
    if ev.next_attempt > ctx.attempt_base + 1:
        # `cofi retry` sent this input back after its next stage failed: wait for that failure.
        retried = following(ev.stage)
        if retried is not None:
            applied.add(
                file_events.announced_failure(ctx.assignment, retried.name, ev.next_attempt)
            )
    changes.add_file(
        FileChange(
            ev.batch_id,
            ev.file_name,
            created_at=at,
            updated_at=at,
            audio_uri=ctx.audio_uri,
            ip=short_opt(ctx.host),
            assignment=ctx.assignment,
            flags=FLAGS_OF_STAGE.get(ev.stage, NO_FLAGS),
            terminal_state=terminal,
            finished_at=at if terminal else None,
            # Every later event carries the decision too: the file row gets it even if the
            # triage event itself is still behind on its partition.
            triage_route=triage.route if triage else None,
            triage_rule=short_opt(triage.rule) if triage else None,
            triage_reason=short_text(triage.reason, MAX_ERROR) if triage else None,
            triage_assignment=ctx.assignment if triage else None,
            triage_attempt=_triage_attempt(ev) if triage else None,
            resolutions=finished_through(at, index(ev.stage), terminal == "skipped"),
            applied_events=frozenset(applied),
        )
    )
    for attempt in ev.attempts:
        changes.add_attempt(_attempt_row(ev.batch_id, ev.file_name, ev.stage, attempt))
    if log_file_start and terminal is None:
        entered = following(ev.stage)  # the stage the file enters next
        if entered is not None:
            changes.add_log(
                _file_start(ev.batch_id, entered.name, ev.file_name, at, ctx.assignment)
            )


def _triage_attempt(ev: FileStageCompleted) -> int:
    """The triage's own event carries its attempt; a later stage's copy of the decision
    ranks below every triage of its assignment."""
    if ev.stage != TRIAGE:
        return 0
    return max((a.number for a in ev.attempts), default=ev.next_attempt)


def _failed(changes: PollChanges, ev: FileFailed) -> None:
    at = naive_utc(ev.failed_at)
    error = short_text(ev.error, MAX_ERROR)
    host, audio_uri, assignment = _context_of(ev.input_event)
    last_attempt = max((a.number for a in ev.attempts), default=0)
    changes.add_file(
        FileChange(
            ev.batch_id,
            ev.file_name,
            created_at=at,
            updated_at=at,
            audio_uri=audio_uri,
            ip=host,
            assignment=assignment,
            terminal_state="failed",
            finished_at=at,
            failed_stage=ev.stage,
            failed_error=error,
            failed_at=at,
            resolutions=failed_from(at, index(ev.stage)),
            applied_events=frozenset({file_events.failure(assignment, ev.stage, last_attempt)}),
        )
    )
    for attempt in ev.attempts:
        changes.add_attempt(_attempt_row(ev.batch_id, ev.file_name, ev.stage, attempt))
    if not ev.attempts:
        # A failure without a model call (a deadline, say) still gets its processing_logs row.
        changes.add_attempt(
            AttemptRow(
                attempt_key=sha256_of(ev.batch_id, ev.file_name, ev.stage, 0),
                call_id=ev.file_name,
                batch_id=ev.batch_id,
                stage_name=ev.stage,
                status="failure",
                error_message=error,
                input_payload=_json(ev.input_event),
                output_payload=None,
                attempt=0,
                host=short_opt(ev.host),
                error_kind=ev.error_kind,
                started_at=at,
                duration_ms=0.0,
            )
        )
    changes.add_log(
        LogRow(
            event_key=sha256_of(ev.batch_id, ev.stage, FILE_ERROR, ev.file_name),
            batch_id=ev.batch_id,
            stage=ev.stage,
            event_type=FILE_ERROR,
            created_at=at,
            file_name=ev.file_name,
            status=error,
        )
    )


def _attempt_row(batch_id: str, file_name: str, stage: str, a: Attempt) -> AttemptRow:
    return AttemptRow(
        attempt_key=sha256_of(batch_id, file_name, stage, a.number),
        call_id=file_name,
        batch_id=batch_id,
        stage_name=stage,
        status="success" if a.ok else "failure",
        error_message=short_text(a.error, MAX_ERROR) if a.error is not None else None,
        input_payload=_json(a.request),
        output_payload=_json(a.response),
        attempt=a.number,
        host=short_opt(a.host),
        error_kind=a.error_kind,
        started_at=naive_utc(a.started_at),
        duration_ms=a.duration_ms,
    )


def _file_start(batch_id: str, stage: str, file_name: str, at: datetime, assignment: int) -> LogRow:
    """A file entering a stage, once per assignment: a failed-over file enters its stages
    again on its new host, and that is a row of its own rather than whichever of the two
    was applied first (the first assignment keeps the key rows had before failover did)."""
    identity = (batch_id, stage, FILE_START, file_name, *((assignment,) if assignment else ()))
    return LogRow(
        event_key=sha256_of(*identity),
        batch_id=batch_id,
        stage=stage,
        event_type=FILE_START,
        created_at=at,
        file_name=file_name,
        status=Status.IN_PROGRESS.value,
    )


def _context_of(input_event: dict[str, Any]) -> tuple[str | None, str | None, int]:
    """Host, audio URI and assignment from a failed stage's input event (a
    FileStageCompleted)."""
    ctx = input_event.get("context")
    if not isinstance(ctx, dict):
        # A distribution failure carries its upload or hand-back, whose assignment is its own.
        moved = input_event.get("assignment")
        uri = input_event.get("audio_uri")
        return (
            None,
            uri if isinstance(uri, str) and 0 < len(uri) <= MAX_URI else None,
            moved if isinstance(moved, int) and 0 <= moved < 2**31 else 0,
        )
    host, uri, assignment = ctx.get("host"), ctx.get("audio_uri"), ctx.get("assignment")
    return (
        short_opt(host) if isinstance(host, str) else None,
        uri if isinstance(uri, str) and 0 < len(uri) <= MAX_URI else None,
        assignment if isinstance(assignment, int) and 0 <= assignment < 2**31 else 0,
    )


def _json(value: dict[str, Any] | None) -> str | None:
    """A request or response as its event carried it: pydantic writes a decoded dict back in
    the order and form it was read (compact, UTF-8), the same text for every redelivery, at a
    fraction of a `json.dumps(sort_keys=True)`."""
    if value is None:
        return None
    return to_json(value, fallback=str).decode()
