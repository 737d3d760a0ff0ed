"""Operator tools: send failed files back to their stage, drain a host, cancel a batch."""

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from shared import pipeline
from shared.events import (
    BatchCancelled,
    DeadLetter,
    DeadLetterReplayed,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    HostDrained,
    cancel_key,
    drain_key,
    encode,
    file_key,
)
from shared.kafka import Kafka, make_producer, make_topic_reader
from shared.output import Output
from shared.stages import EventStage
from shared.topics import Topics


@dataclass(frozen=True)
class Mark:
    """A `DeadLetterReplayed` for the dead-letter topic, pinned to the partition of the
    record it names (a letter, or a `FileFailed`), so it always follows that record."""

    topic: str
    partition: int
    key: bytes | None
    event: DeadLetterReplayed


@dataclass(frozen=True)
class RetryPlan:
    outputs: list[Output]
    skipped: list[str]  # why some failed files were not sent back
    already: list[str] = field(default_factory=list)  # failures an earlier retry sent back
    marks: list[Mark] = field(default_factory=list)  # one per failure sent back


Where = tuple[int, int]  # a record's (partition, offset) on the dead-letter topic


def latest_failures(
    failures: Iterable[FileFailed],
    batch_id: str,
    stage: str | None,
    file_name: str | None,
    at: Sequence[Where] = (),
) -> list[tuple[FileFailed, Where | None]]:
    """The last failure of each file of the batch (a file may have failed, been retried, ...),
    with where its record is (`at`, in the order of `failures`; unknown when not given)."""
    latest: dict[str, tuple[FileFailed, Where | None]] = {}
    for n, failure in enumerate(failures):
        if failure.batch_id != batch_id:
            continue
        if file_name is not None and failure.file_name != file_name:
            continue
        latest[failure.file_name] = (failure, at[n] if n < len(at) else None)
    return [(f, w) for f, w in latest.values() if stage is None or f.stage == stage]


def retry_output(failure: FileFailed, topics: Topics, reroute: bool = False) -> Output:
    """The failed stage's input again, with attempt numbers continuing after the last one;
    with `reroute`, a GPU-stage failure is handed to the distributor for another host."""
    key = file_key(failure.batch_id, failure.file_name)
    kind = failure.input_event.get("type")
    if kind == "FileUploaded":
        upload = FileUploaded.model_validate(failure.input_event)
        return Output(topics.uploads, failure.batch_id.encode(), upload)
    if kind == "FileReassigned":
        # The hosts it left were down then; a retry is the operator saying they may be back
        # (drained and `:down` hosts stay excluded by the distributor's own state).
        moved = FileReassigned.model_validate(failure.input_event).model_copy(update={"avoid": ()})
        return Output(topics.uploads, failure.batch_id.encode(), moved)
    event = FileStageCompleted.model_validate(failure.input_event)
    # A failure with no attempts (refused before any call, or ended by a dead letter) still
    # continues after every number the file used: an attempt's identity is its number, so a
    # reused one would make the retry's attempt rows no-ops in processing_logs.
    last = max(
        (a.number for a in failure.attempts),
        default=max(event.next_attempt - 1, event.context.attempt_high),
    )
    event = event.model_copy(update={"next_attempt": last + 1})
    if reroute and failure.host is not None and pipeline.spec(failure.stage).per_host:
        return Output(topics.uploads, failure.batch_id.encode(), _rerouted(failure, event))
    host = event.context.host
    return Output(_input_topic(failure.stage, host, topics), key, event)


def _rerouted(failure: FileFailed, event: FileStageCompleted) -> FileReassigned:
    ctx = event.context
    host = failure.host or ""
    return FileReassigned(
        batch_id=failure.batch_id,
        file_name=failure.file_name,
        audio_uri=ctx.audio_uri,
        stage=failure.stage,
        from_host=host,
        duration_s=ctx.duration_s,
        avoid=ctx.left_hosts if host in ctx.left_hosts else (*ctx.left_hosts, host),
        assignment=ctx.assignment + 1,
        attempt_base=max(ctx.attempt_high, event.next_attempt - 1),
        reason=f"cofi retry --reroute: failed at {failure.stage} on {host}",
    )


def _input_topic(stage: EventStage, host: str | None, topics: Topics) -> str:
    if stage == "distribute":
        raise ValueError("a distribution failure carries its upload; this one does not")
    if pipeline.spec(stage).per_host and host is None:
        raise ValueError(f"a {stage} failure without a GPU host cannot be retried")
    return pipeline.input_topic(stage, topics, host)


def plan_retry(
    failures: Iterable[FileFailed],
    topics: Topics,
    batch_id: str,
    stage: str | None = None,
    file_name: str | None = None,
    finished: Iterable[str] = (),
    reroute: bool = False,
    at: Sequence[Where] = (),
    retried: Iterable[tuple[str, int, int]] = (),
) -> RetryPlan:
    """Each file's last failure back to its stage, once: a failure whose record (`at`, on
    `topics.failed`) a `DeadLetterReplayed` names (`retried`) was sent back by an earlier
    retry and is skipped; each one sent back gets its mark. A later failure of the same file
    is a new record, so it is retried again."""
    done = set(finished)
    before = set(retried)
    plan = RetryPlan([], [])
    for failure, where in latest_failures(failures, batch_id, stage, file_name, at):
        name = failure.file_name
        if name in done:
            plan.skipped.append(f"{name}: already finished")
            continue
        if where is not None and (topics.failed, *where) in before:
            plan.already.append(f"{name}: already retried (failed at {failure.stage})")
            continue
        try:
            plan.outputs.append(retry_output(failure, topics, reroute))
        except (ValidationError, ValueError) as exc:
            plan.skipped.append(f"{name}: {exc}")
            continue
        if where is not None:
            plan.marks.append(_retried_mark(failure, topics.failed, where))
    return plan


def _retried_mark(failure: FileFailed, topic: str, where: Where) -> Mark:
    """The mark naming the `FileFailed` record itself (this topic, its partition, offset)."""
    partition, offset = where
    event = DeadLetterReplayed(
        source_topic=topic, partition=partition, offset=offset, batch_id=failure.batch_id
    )
    return Mark(topic, partition, file_key(failure.batch_id, failure.file_name), event)


@dataclass
class DeadLetterTopic:
    """What the dead-letter topic holds: stages' last words on files, and poison messages."""

    failures: list[FileFailed] = field(default_factory=list)
    failed_at: list[Where] = field(default_factory=list)  # each failure's record, in order
    letters: list[DeadLetter] = field(default_factory=list)
    # A letter's origin (topic, partition, offset) -> its own partition on this topic, where
    # its `DeadLetterReplayed` goes (after it, so the tracker always has its row).
    partitions: dict[tuple[str, int, int], int] = field(default_factory=dict)
    # Origins of the letters a `cofi retry` already replayed, and the `FileFailed` records
    # (this topic, partition, offset) it already sent back.
    replayed: set[tuple[str, int, int]] = field(default_factory=set)


async def read_dead_letter_topic(bootstrap: Kafka, topic: str) -> DeadLetterTopic:
    """Every `FileFailed` and `DeadLetter` on the dead-letter topic, up to its end when we
    started reading."""
    reader = make_topic_reader(bootstrap, topic)
    found = DeadLetterTopic()
    try:
        await reader.start()
        partitions = list(reader.assignment())
        end = await reader.end_offsets(partitions)
        while True:
            positions = {tp: await reader.position(tp) for tp in partitions}
            if all(positions[tp] >= end[tp] for tp in partitions):
                return found
            batch = await reader.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:
                        event = _dead_letter_topic.validate_json(record.value or b"")
                    except ValidationError:
                        continue  # not ours to replay: nothing names its origin
                    if isinstance(event, FileFailed):
                        found.failures.append(event)
                        found.failed_at.append((record.partition, record.offset))
                    elif isinstance(event, DeadLetterReplayed):
                        found.replayed.add((event.source_topic, event.partition, event.offset))
                    else:
                        found.letters.append(event)
                        origin = (event.source_topic, event.partition, event.offset)
                        found.partitions.setdefault(origin, record.partition)
    finally:
        await reader.stop()


_dead_letter_topic: TypeAdapter[FileFailed | DeadLetter | DeadLetterReplayed] = TypeAdapter(
    Annotated[FileFailed | DeadLetter | DeadLetterReplayed, Field(discriminator="type")]
)


async def publish(
    bootstrap: Kafka,
    outputs: list[Output],
    raw: Iterable[tuple[str, bytes | None, bytes]] = (),
    marks: Iterable[Mark] = (),
) -> None:
    """Send the events of `outputs`, and `raw` (topic, key, value) as they are; then, once
    the broker acknowledged every one, the `marks` saying which letters and failures were
    sent back (a crash in between sends one again next time, never marks one not sent)."""
    producer = make_producer(bootstrap, "cofi-operator")
    try:
        await producer.start()
        acks = [await producer.send(o.topic, encode(o.event), key=o.key) for o in outputs]
        acks += [await producer.send(topic, value, key=key) for topic, key, value in raw]
        await asyncio.gather(*acks)
        acks = [
            await producer.send(m.topic, encode(m.event), key=m.key, partition=m.partition)
            for m in marks
        ]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


def drain(host: str, drained: bool, reason: str, topics: Topics) -> Output:
    """`cofi drain`: the latest word per host on the compacted control topic."""
    return Output(
        topics.control,
        drain_key(host),
        HostDrained(host=host, drained=drained, reason=reason),
    )


def cancellation(batch_id: str, reason: str, topics: Topics) -> Output:
    event = BatchCancelled(batch_id=batch_id, reason=reason)
    return Output(topics.control, cancel_key(batch_id), event)
