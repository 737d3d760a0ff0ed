"""Pure routing of the distributor's two inputs: uploads, and files that finished LID.

Each function maps one raw message to the messages to publish; a message that cannot be
decoded becomes a dead letter carrying its raw bytes.
"""

import json
from collections.abc import Callable, Container
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, Field, ValidationError

from services.distributor.assignment import NoHostAvailable, UploadLedger, choose_host
from services.distributor.triage import RuleBook, decide
from shared.audio_uri import AudioUriPolicy, audio_uri_problem
from shared.events import (
    Attempt,
    BatchClosed,
    FileContext,
    FileFailed,
    FileName,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    file_key,
    upload_event,
)
from shared.model_stage import decoder_for
from shared.output import Output
from shared.pipeline import output_topic
from shared.runtime.dead_letters import dead_letter
from shared.settings import GpuHost
from shared.topics import Topics

CONSUMER = "distributor"
# Triage reads the previous stage's completed events (shared/pipeline.py), as any stage does.
decode_triage_input = decoder_for("triage")
# The settings' defaults: any local absolute path, no other scheme.
LOCAL_FILES = AudioUriPolicy()


@dataclass(frozen=True)
class Incoming:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def route_upload(
    message: Incoming,
    hosts: list[GpuHost],
    topics: Topics,
    cancelled: Container[str] = frozenset(),
    audio_policy: AudioUriPolicy = LOCAL_FILES,
    ledger: UploadLedger | None = None,
    drained: Container[str] = frozenset(),
) -> list[Output]:
    """Route one upload. With a `ledger` (duration-aware placement), every record of the
    partition must pass through here or through `observe_upload`, in offset order. A file
    handed back (`FileReassigned`, failover) goes to a host other than those it left, by
    rendezvous hashing; drained hosts (`cofi drain`) get nothing. Raises `NoHostAvailable`
    when every GPU host is drained or marked down: the caller waits and routes the same
    message again (`waiting.py`), as no file should fail for that."""
    try:
        event = upload_event.validate_json(message.value or b"")
    except (ValidationError, ValueError) as exc:
        if ledger is not None:
            ledger.skip(message.partition, message.offset)
        return [_invalid_upload(message, topics, exc)]
    if isinstance(event, BatchClosed):
        if ledger is not None:
            ledger.skip(message.partition, message.offset)
        return []  # the tracker reads the batch's size from the uploads topic itself
    if isinstance(event, FileReassigned):
        return _route_back(message, event, hosts, topics, cancelled, ledger, drained, audio_policy)
    problem = audio_uri_problem(event.audio_uri, audio_policy)
    # Placed before the cancellation check: the ledger's state must not depend on when this
    # process learnt of a cancel, only on the uploads partition (and the settings).
    host = _place(message, event, hosts, ledger, problem)
    if event.batch_id in cancelled:
        return []  # the tracker marks the batch's unstarted files cancelled
    if problem is not None:
        # Never sent to a GPU host: the file ends failed, with the reason, and the batch goes on.
        return [_not_distributed(event, topics, problem)]
    if isinstance(host, NoHostAvailable):
        raise host  # every host marked down: an outage, not the file's doing (it waits)
    if host in drained:
        # Drained after the ledger placed it (the ledger stays a function of the partition):
        # it goes where it would go without the drained hosts.
        usable = [h for h in hosts if h.ip not in drained]
        host = choose_host(event.batch_id, event.file_name, usable)
    return [_assign(event, host, topics)]


def _route_back(
    message: Incoming,
    event: FileReassigned,
    hosts: list[GpuHost],
    topics: Topics,
    cancelled: Container[str],
    ledger: UploadLedger | None,
    drained: Container[str],
    audio_policy: AudioUriPolicy,
) -> list[Output]:
    """A file handed back by a dead or drained host: rendezvous hashing without the hosts it
    left (deterministic: a redelivered hand-back lands on the same host); the ledger only
    notes the offset. Its `audio_uri` is checked again: anyone who can write an upload can
    write a hand-back."""
    if ledger is not None:
        ledger.skip(message.partition, message.offset)
    if event.batch_id in cancelled:
        return []
    problem = audio_uri_problem(event.audio_uri, audio_policy)
    if problem is not None:
        return [_not_distributed(event, topics, problem)]
    usable = [h for h in hosts if h.ip not in drained and not h.down]
    if not usable:
        raise NoHostAvailable("every GPU host is drained or marked down")
    avoid = event.avoid
    fresh = [h for h in usable if h.ip not in avoid]
    if not fresh:
        # Every usable host failed it over (the whole fleet was down, or `cofi retry`
        # resent the list): a new round, avoiding only the host that just handed it back.
        avoid = (event.from_host,) if event.from_host else ()
        fresh = [h for h in usable if h.ip not in avoid] or usable
    host = choose_host(event.batch_id, event.file_name, fresh)
    base = event.attempt_base
    assigned = FileStageCompleted(
        batch_id=event.batch_id,
        file_name=event.file_name,
        stage="distribute",
        context=FileContext(
            audio_uri=event.audio_uri,
            host=host,
            duration_s=event.duration_s,
            assignment=event.assignment,
            attempt_base=base,
            attempt_high=base,
            left_hosts=avoid,
        ),
        completed_at=event.requested_at,
        next_attempt=base + 1,  # it starts again at denoise; attempts count on
    )
    key = file_key(event.batch_id, event.file_name)
    return [Output(output_topic("distribute", topics, host), key, assigned)]


def observe_upload(
    message: Incoming,
    hosts: list[GpuHost],
    ledger: UploadLedger,
    audio_policy: AudioUriPolicy = LOCAL_FILES,
) -> None:
    """Replay: place an already-routed upload in the ledger, producing nothing."""
    try:
        event = upload_event.validate_json(message.value or b"")
    except (ValidationError, ValueError):
        event = None
    if isinstance(event, FileUploaded):
        problem = audio_uri_problem(event.audio_uri, audio_policy)
        _place(message, event, hosts, ledger, problem)
    else:
        ledger.skip(message.partition, message.offset)


def _place(
    message: Incoming,
    event: FileUploaded,
    hosts: list[GpuHost],
    ledger: UploadLedger | None,
    problem: str | None,
) -> str | NoHostAvailable:
    """The file's host (recorded in the ledger), or why it has none."""
    if problem is not None:
        if ledger is not None:
            ledger.skip(message.partition, message.offset)
        return NoHostAvailable(problem)
    try:
        if ledger is None:
            return choose_host(event.batch_id, event.file_name, hosts)
        return ledger.place(
            message.partition,
            message.offset,
            event.batch_id,
            event.file_name,
            event.duration_s,
            hosts,
        )
    except NoHostAvailable as exc:
        if ledger is not None:
            ledger.skip(message.partition, message.offset)
        return exc


def _not_distributed(event: FileUploaded | FileReassigned, topics: Topics, reason: str) -> Output:
    moved = isinstance(event, FileReassigned)
    failure = FileFailed(
        batch_id=event.batch_id,
        file_name=event.file_name,
        stage="distribute",
        error_kind="permanent",
        error=f"not {'re-assigned' if moved else 'distributed'}: {reason}",
        input_event=event.model_dump(mode="json"),
    )
    return Output(topics.failed, file_key(event.batch_id, event.file_name), failure)


def _assign(event: FileUploaded, host: str, topics: Topics) -> Output:
    key = file_key(event.batch_id, event.file_name)
    assigned = FileStageCompleted(
        batch_id=event.batch_id,
        file_name=event.file_name,
        stage="distribute",
        context=FileContext(audio_uri=event.audio_uri, host=host, duration_s=event.duration_s),
        completed_at=event.uploaded_at,
    )
    return Output(output_topic("distribute", topics, host), key, assigned)


def route_after_lid(
    message: Incoming,
    rules: RuleBook,
    topics: Topics,
    cancelled: Container[str] = frozenset(),
) -> list[Output]:
    try:
        event = decode_triage_input(message.value or b"")
        if event.context.host is None:
            raise ValueError("event has no GPU host")
    except (ValidationError, ValueError) as exc:
        return [_dead(message, topics, exc)]
    if event.batch_id in cancelled:
        return []
    decision = decide(rules, event.context)
    context = event.context.model_copy(update={"triage": decision})
    facts = {
        "is_ivr": context.is_ivr,
        "language": context.language,
        "duration_s": context.duration_s,
    }
    attempt = Attempt(
        number=max(event.next_attempt, context.attempt_base + 1),
        ok=True,
        started_at=datetime.now(UTC),
        request=facts,
        response=decision.model_dump(mode="json"),
    )
    context = context.model_copy(update={"attempt_high": max(context.attempt_high, attempt.number)})
    triaged = FileStageCompleted(
        batch_id=event.batch_id,
        file_name=event.file_name,
        stage="triage",
        context=context,
        attempts=(attempt,),
        next_attempt=context.attempt_base + 1,
    )
    topic = output_topic("triage", topics, event.context.host, decision.route)
    return [Output(topic, file_key(event.batch_id, event.file_name), triaged)]


def _invalid_upload(message: Incoming, topics: Topics, exc: Exception) -> Output:
    """An upload that names its file (a valid batch id and file name) but breaks a bound or
    a type elsewhere (a 400-digit `duration_s`, say) fails that file, with the fields named,
    so its batch still ends; anything else is a dead letter with its raw bytes."""
    try:
        raw = json.loads(message.value or b"")
        names = _FileNames.model_validate(raw) if isinstance(raw, dict) else None
    except (ValidationError, ValueError):
        names = None
    if names is None or raw.get("type") != "FileUploaded" or not isinstance(exc, ValidationError):
        return _dead(message, topics, exc)
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
        for e in exc.errors(include_url=False)
        if not e["loc"] or e["loc"][0] == "FileUploaded"
    )
    failure = FileFailed(
        batch_id=names.batch_id,
        file_name=names.file_name,
        stage="distribute",
        error_kind="permanent",
        error=f"not distributed: invalid upload: {problems[:1500]}",
        input_event=raw,
    )
    return Output(topics.failed, file_key(names.batch_id, names.file_name), failure)


class _FileNames(BaseModel):
    """What an invalid upload must still say for its file to get an end."""

    batch_id: str = Field(min_length=1, max_length=64)
    file_name: FileName


def _dead(message: Incoming, topics: Topics, exc: Exception) -> Output:
    letter = dead_letter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        consumer=CONSUMER,
        error=f"undecodable: {str(exc)[:1500]}",
    )
    return Output(topics.failed, message.key, letter)


Router = Callable[[Incoming], list[Output]]
