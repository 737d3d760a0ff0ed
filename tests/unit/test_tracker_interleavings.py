"""The tracker's tables are a function of the topics, whatever the interleaving (issue 19).

Kafka orders records only within a partition. A batch's events are built as the pipeline
writes them, each on its topic and partition; hypothesis draws any merge of those streams
that keeps each one's order, and any split into polls. Every such run must give the same
tables as the events applied in the order they were made, and after every poll a batch that
reads Complete must have every one of its events applied.

The streams hold failed-over files (re-assigned to the other host), retries, late uploads
(files beyond `file_count` uploaded after the close, which the stages still run once), a
close anywhere among the uploads, a cancel on the control topic, and redelivered events
(a copy later in the same partition); the tracker logs `file_start` rows too."""

import asyncio
import base64
import dataclasses
import itertools
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.tracker.engine import make_engine
from services.tracker.fold import RecordMeta, TrackedEvent, Undecodable
from services.tracker.migrate import migrate
from services.tracker.service import Tracker, TrackerOptions
from services.tracker.tables import batch_status
from shared.events import (
    Attempt,
    BatchCancelled,
    BatchClosed,
    DeadLetter,
    FileContext,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    TriageDecision,
    file_key,
)
from shared.pipeline import PIPELINE, TRIAGE, index, output_topic, previous, spec
from shared.status import Status
from shared.topics import Topics
from tests.tracker_scenario import dump

Tracked = TrackedEvent  # an event, or a record the tracker cannot read
BATCH = "batch-prop"
HOSTS = ("127.0.0.2", "127.0.0.3")
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
TOPICS = Topics("cofi")
PARTITIONS = 2
STAGES = tuple(s.name for s in PIPELINE)
GPU = tuple(s.name for s in PIPELINE if s.per_host)
SKIP = next(r for r, to in spec(TRIAGE).routes.items() if to is None)
TRANSCRIBE = next(r for r, to in spec(TRIAGE).routes.items() if to is not None)

# What happens to a file: done, triaged out, failed at a stage, handed back by its host at a
# GPU stage (then triaged out or not on the new host), or failed and retried at a stage.
Fate = tuple[str, str | None, bool]
FATES: list[Fate] = [
    ("done", None, False),
    ("skipped", None, False),
    *(("failed", s, False) for s in STAGES[1:]),
    *(("moved", s, skip) for s in GPU for skip in (False, True)),
    *(("retried", s, False) for s in STAGES[2:]),
]


@dataclass
class Streams:
    """Each partition's records, in the order the pipeline wrote them."""

    by_partition: dict[tuple[str, int], list[Tracked]] = field(default_factory=dict)
    made: list[Tracked] = field(default_factory=list)  # every event, in the order made
    # Events of a `cofi retry`, which someone runs after the file failed, maybe after its
    # batch read Complete (the retry reopens it): not expected applied before Complete.
    retries: set[int] = field(default_factory=set)
    retrying: bool = False
    # Events not expected applied when the batch reads Complete: a rejected late file's,
    # and redelivered copies (the original is expected).
    extra: set[int] = field(default_factory=set)
    late: bool = False

    def add(self, topic: str, key: bytes, event: Tracked) -> None:
        partition = sum(key) % PARTITIONS
        self.by_partition.setdefault((topic, partition), []).append(event)
        self.made.append(event)
        if self.retrying:
            self.retries.add(id(event))
        if self.late:
            self.extra.add(id(event))

    def redeliver(self, partition: tuple[str, int], position: int) -> None:
        """A copy of the partition's record at `position`, delivered again later on it."""
        stream = self.by_partition[partition]
        copy = _copy(stream[position])
        stream.insert(min(len(stream), position + 2), copy)
        self.made.append(copy)
        self.extra.add(id(copy))


@dataclass(frozen=True)
class Batch:
    """What hypothesis draws: each file's fate, where the close falls among the uploads, how
    many late files come after it, whether (and after how many events) a cancel comes, and
    which records are delivered twice."""

    fates: tuple[Fate, ...]
    close_after: int
    late: int
    cancel_after: int | None
    redelivered: tuple[tuple[int, int], ...]
    poison: bool = False  # one upload is a poison record (the batch's file_count counts it)


def build(batch: Batch) -> Streams:
    out = Streams()
    clock = itertools.count()

    def at() -> datetime:
        return T0 + timedelta(milliseconds=10 * next(clock))

    uploads_key = BATCH.encode()
    fates = batch.fates
    count = len(fates) + batch.poison
    if batch.poison:
        _poison(out, at())
    for i, _ in enumerate(fates):
        if i == batch.close_after:
            out.add(TOPICS.uploads, uploads_key, _close(count, at()))
        out.add(TOPICS.uploads, uploads_key, _upload(f"call-{i}.wav", at()))
    if batch.close_after >= len(fates):
        out.add(TOPICS.uploads, uploads_key, _close(count, at()))
    out.late = True  # beyond file_count: rejected, although the stages run them once
    for j in range(batch.late):
        out.add(TOPICS.uploads, uploads_key, _upload(f"late-{j}.wav", at()))
    for j in range(batch.late):
        _file(out, f"late-{j}.wav", ("done", None, False), j, at)
    out.late = False
    for i, fate in enumerate(fates):
        if i == batch.cancel_after:
            out.add(TOPICS.control, BATCH.encode(), _cancel(at()))
        _file(out, f"call-{i}.wav", fate, i, at)
        out.retrying = False
    for n, (which, position) in enumerate(batch.redelivered):
        partitions = sorted(out.by_partition)
        partition = partitions[(which + n) % len(partitions)]
        out.redeliver(partition, position % len(out.by_partition[partition]))
    return out


def _poison(out: Streams, when: datetime) -> None:
    """An upload no one can read: the tracker reads it on the uploads partition, and the
    distributor's dead letter about the same record comes on `failed`, in any order; the file
    it names ends failed. The letter is not expected before Complete: the record it is about
    is (the tracker's own reading of it)."""
    raw = json.dumps(
        {"type": "FileUploaded", "batch_id": BATCH, "file_name": "poison.wav", "audio_uri": 5}
    ).encode()
    partition = sum(BATCH.encode()) % PARTITIONS
    meta = RecordMeta(TOPICS.uploads, partition, 9, int(when.timestamp() * 1000), BATCH.encode())
    out.add(TOPICS.uploads, BATCH.encode(), Undecodable(meta, raw, "undecodable: audio_uri"))
    letter = DeadLetter(
        source_topic=TOPICS.uploads,
        partition=partition,
        offset=9,
        consumer="distributor",
        error="audio_uri is not a string",
        key_b64=base64.b64encode(BATCH.encode()).decode(),
        value_b64=base64.b64encode(raw).decode(),
        at=when,
    )
    late, out.late = out.late, True
    out.add(TOPICS.failed, file_key(BATCH, "poison.wav"), letter)
    out.late = late


def _copy(event: Tracked) -> Tracked:
    return dataclasses.replace(event) if isinstance(event, Undecodable) else event.model_copy()


def _close(count: int, when: datetime) -> BatchClosed:
    return BatchClosed(batch_id=BATCH, file_count=count, closed_at=when)


def _cancel(when: datetime) -> BatchCancelled:
    return BatchCancelled(batch_id=BATCH, reason="operator", cancelled_at=when)


def _upload(name: str, when: datetime) -> FileUploaded:
    return FileUploaded(
        batch_id=BATCH, file_name=name, audio_uri=f"s3://a/{name}", uploaded_at=when
    )


def _file(out: Streams, name: str, fate: Fate, i: int, at: Any) -> None:
    kind, where, skip_after_move = fate
    key = file_key(BATCH, name)
    host, assignment, number = HOSTS[i % 2], 0, 1
    retried = False
    stage_index = 0
    route = SKIP if kind == "skipped" else TRANSCRIBE
    while stage_index < len(STAGES):
        stage = STAGES[stage_index]
        ctx = FileContext(
            audio_uri=f"s3://a/{name}",
            host=host,
            assignment=assignment,
            attempt_base=number - 1,
            triage=TriageDecision(route=route, reason="rules")
            if stage_index >= index(TRIAGE)
            else None,
        )
        if stage == where and kind == "failed":
            out.add(TOPICS.failed, key, _failure(name, stage, host, ctx, number, at()))
            return
        if stage == where and kind == "retried" and not retried:
            retried = True
            out.add(TOPICS.failed, key, _failure(name, stage, host, ctx, number, at()))
            out.retrying = True
            number += 1
            before = previous(stage)
            assert before is not None
            again = FileStageCompleted(
                batch_id=BATCH,
                file_name=name,
                stage=before.name,
                context=ctx,
                completed_at=at(),
                next_attempt=number,
            )
            out.add(_topic_after(before.name, host, route), key, again)
        if stage == where and kind == "moved" and assignment == 0:
            out.add(
                TOPICS.uploads,
                BATCH.encode(),
                FileReassigned(
                    batch_id=BATCH,
                    file_name=name,
                    audio_uri=f"s3://a/{name}",
                    stage=stage,
                    from_host=host,
                    avoid=(host,),
                    assignment=1,
                    attempt_base=number,
                    requested_at=at(),
                ),
            )
            host, assignment, number = HOSTS[(i + 1) % 2], 1, number + 1
            route = SKIP if skip_after_move else TRANSCRIBE
            stage_index = 0  # it starts again at distribute on the other host
            continue
        attempts = (
            ()
            if stage == "distribute"
            else (Attempt(number=number, host=host, ok=True, started_at=at()),)
        )
        done = FileStageCompleted(
            batch_id=BATCH,
            file_name=name,
            stage=stage,
            context=ctx.model_copy(update={"attempt_high": number}),
            attempts=attempts,
            completed_at=at(),
            next_attempt=ctx.attempt_base + 1,
        )
        out.add(_topic_after(stage, host, route), key, done)
        if stage == TRIAGE and route == SKIP:
            return
        stage_index += 1


def _topic_after(stage: str, host: str, route: str) -> str:
    return output_topic(stage, TOPICS, host, route if spec(stage).routes else None)


def _failure(
    name: str, stage: str, host: str, ctx: FileContext, number: int, when: datetime
) -> FileFailed:
    return FileFailed(
        batch_id=BATCH,
        file_name=name,
        stage=stage,
        host=host,
        error_kind="permanent",
        error=f"{stage} gave up",
        attempts=(Attempt(number=number, host=host, ok=False, started_at=when, error="422"),),
        input_event={"context": ctx.model_dump(mode="json")},
        failed_at=when,
    )


@st.composite
def runs(draw: st.DrawFn) -> tuple[Streams, list[Tracked], list[int]]:
    """A batch, one interleaving of its partitions, and a split into polls."""
    fates = tuple(draw(st.lists(st.sampled_from(FATES), min_size=1, max_size=4)))
    batch = Batch(
        fates,
        close_after=draw(st.integers(0, len(fates))),
        late=draw(st.integers(0, 2)),
        cancel_after=draw(st.none() | st.integers(0, len(fates) - 1)),
        redelivered=tuple(
            draw(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=3))
        ),
        poison=draw(st.booleans()),
    )
    streams = build(batch)
    queues = {p: list(events) for p, events in streams.by_partition.items()}
    order: list[Tracked] = []
    while queues:
        partition = draw(st.sampled_from(sorted(queues)))
        order.append(queues[partition].pop(0))
        if not queues[partition]:
            del queues[partition]
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=8))
    return streams, order, sizes


_TEMPLATE: dict[str, Path] = {}


def fresh_database(tmp: Path, name: str) -> str:
    """A migrated SQLite database: the first is migrated, the others are copies of it."""
    if "db" not in _TEMPLATE:
        template = tmp / "template.db"
        asyncio.run(migrate(f"sqlite+aiosqlite:///{template}"))
        _TEMPLATE["db"] = template
    path = tmp / name
    shutil.copyfile(_TEMPLATE["db"], path)
    return f"sqlite+aiosqlite:///{path}"


async def apply_in_polls(
    url: str,
    events: Sequence[Tracked],
    sizes: Sequence[int],
    expected: set[int] | None,
    instances: int = 1,
) -> Any:
    """Apply `events` in polls of `sizes`, by turns of `instances` trackers on the one
    database; with `expected` (the ids of the events that must be applied when the batch
    reads Complete), check it after every poll."""
    engine = make_engine(url)
    try:
        options = TrackerOptions(topic_prefix="cofi", progress_interval=2, log_file_start=True)
        trackers = itertools.cycle([Tracker(engine, options) for _ in range(instances)])
        poll_sizes = itertools.cycle(sizes)
        applied = 0
        while applied < len(events):
            size = next(poll_sizes)
            await next(trackers).apply_events(events[applied : applied + size])
            applied = min(len(events), applied + size)
            if expected is not None:
                async with engine.connect() as conn:
                    status = (await conn.execute(select(batch_status.c.status))).scalar()
                if status == Status.COMPLETE:
                    unapplied = [e for e in events[applied:] if id(e) in expected]
                    assert not unapplied, f"Complete with {unapplied} unapplied"
        return await dump(engine)
    finally:
        await engine.dispose()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(run=runs())
def test_any_interleaving_gives_the_same_tables_and_no_early_complete(
    tmp_path_factory: Any, run: tuple[Streams, list[Tracked], list[int]]
) -> None:
    streams, order, sizes = run
    tmp: Path = tmp_path_factory.mktemp("interleaving")
    reference_db, run_db = fresh_database(tmp, "ref.db"), fresh_database(tmp, "run.db")

    async def both() -> tuple[Any, Any]:
        reference = await apply_in_polls(reference_db, streams.made, [len(streams.made)], None)
        expected = {id(e) for e in streams.made} - streams.retries - streams.extra
        (row,) = reference["batchStatus"]
        if Status.COMPLETE in row:
            # A cancel that came after every file finished every stage changes nothing (the
            # batch stays Complete): the tracker cannot wait for it, nor need to.
            expected -= {id(e) for e in streams.made if isinstance(e, BatchCancelled)}
        shuffled = await apply_in_polls(run_db, order, sizes, expected)
        return reference, shuffled

    reference, shuffled = asyncio.run(both())
    (batch,) = reference["batchStatus"]
    assert Status.COMPLETE in batch or Status.CANCELLED in batch, "every file ended"
    for table, rows in reference.items():
        assert shuffled[table] == rows, f"{table} differs in another interleaving"
