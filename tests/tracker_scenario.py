"""A synthetic batch's events and helpers for the tracker's tests: build the events, send
them through Kafka or straight into a Tracker, dump the tables (`tests/tracker_expected.py`
says what they must hold)."""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracker.fold import RecordMeta, TrackedEvent, Undecodable
from services.tracker.service import Tracker, TrackerOptions
from services.tracker.tables import (
    batch_execution_log,
    batch_status,
    dead_letters,
    file_distribution,
    processing_logs,
)
from shared.events import (
    Attempt,
    BatchCancelled,
    BatchClosed,
    DeadLetter,
    Event,
    FileContext,
    FileFailed,
    FileReassigned,
    FileStageCompleted,
    FileUploaded,
    TriageDecision,
    encode,
    file_key,
)
from shared.kafka import ensure_topics, make_producer
from shared.pipeline import PIPELINE, TRIAGE, output_topic
from shared.topics import Topics
from tests import kafka_helpers

HOSTS = ("127.0.0.2", "127.0.0.3")
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
STAGES = tuple(row.name for row in PIPELINE)
FAIL_AT = STAGES[1:]
# A moved file's attempts on its new host count from here (above any it made before).
MOVED_BASE = 9
TABLES: tuple[tuple[Table, str], ...] = (
    (file_distribution, "fileKey"),
    (batch_status, "batchId"),
    (processing_logs, "attemptKey"),
    (batch_execution_log, "eventKey"),
    (dead_letters, "letterKey"),
)


@dataclass
class Scenario:
    batch_id: str
    events: list[Event] = field(default_factory=list)
    poison: list[Undecodable] = field(default_factory=list)
    terminal: Counter[str] = field(default_factory=Counter)
    failed_stage: dict[str, str] = field(default_factory=dict)
    attempts: set[tuple[str, str, int]] = field(default_factory=set)
    file_errors: int = 0
    # Files a failover moved (`failovers`): the host and assignment their row must show.
    moved: dict[str, tuple[str, int]] = field(default_factory=dict)


def build_scenario(
    batch_id: str = "batch-300", n: int = 300, *, failovers: bool = False
) -> Scenario:
    """`n` files: most done, every tenth failing at some stage, every tenth triaged out,
    every fiftieth failing at ivr and then succeeding on a retry; transient retries as extra
    attempts; one very long and one non-ASCII name; one dead letter and one poison record.
    With `failovers`, every twenty-fifth file's host gives up at ivr and hands it back
    (FileReassigned, its failed attempts kept): it restarts at distribute on the other host,
    the events carrying assignment 1 and attempt numbers counting on.
    Events come out in pipeline order (every upload, then every host assignment, ...)."""
    sc = Scenario(batch_id)
    names = [f"call-{i:04d}.wav" for i in range(n)]
    names[1] = "x" * 990 + "-long.wav"
    names[2] = "Gespräch-ü-02.wav"
    clock = iter(range(1_000_000))

    def at() -> datetime:
        return T0 + timedelta(milliseconds=10 * next(clock))

    waves: dict[str, list[Event]] = {stage: [] for stage in ("upload", *STAGES, "failed")}
    for name in names:
        waves["upload"].append(
            FileUploaded(
                batch_id=batch_id, file_name=name, audio_uri=f"s3://audio/{name}", uploaded_at=at()
            )
        )
    waves["upload"].insert(n // 2, BatchClosed(batch_id=batch_id, file_count=n, closed_at=at()))

    for i, name in enumerate(names):
        host = HOSTS[i % 2]
        assignment = 0
        moves = failovers and i % 25 == 9  # never one that fails, is skipped or retried
        fail_at = FAIL_AT[(i // 10) % len(FAIL_AT)] if i % 10 == 3 else None
        skip = i % 10 == 7
        retried = i % 50 == 5
        triage: TriageDecision | None = None
        for stage in STAGES:
            attempts: list[Attempt] = []
            if stage != "distribute":
                failures = 2 if (i + STAGES.index(stage)) % 7 == 0 else 0
                attempts = [
                    _attempt(k + 1, host, ok=k == failures, at=at()) for k in range(failures + 1)
                ]
            if stage == fail_at:
                bad = [_attempt(k + 1, host, ok=False, at=at()) for k in range(3)]
                waves["failed"].append(_failure(batch_id, name, stage, host, bad, at()))
                sc.attempts |= {(name, stage, a.number) for a in bad}
                sc.failed_stage[name] = stage
                sc.terminal["failed"] += 1
                sc.file_errors += 1
                break
            if retried and stage == "ivr":
                bad = [_attempt(k + 1, host, ok=False, at=at()) for k in range(2)]
                waves["failed"].append(_failure(batch_id, name, stage, host, bad, at()))
                sc.attempts |= {(name, stage, a.number) for a in bad}
                sc.file_errors += 1
                # `cofi retry` sends ivr's input back; the retry goes on numbering where the
                # failed run stopped.
                waves["denoise"].append(
                    FileStageCompleted(
                        batch_id=batch_id,
                        file_name=name,
                        stage="denoise",
                        context=FileContext(audio_uri=f"s3://audio/{name}", host=host),
                        completed_at=at(),
                        next_attempt=3,
                    )
                )
                attempts = [_attempt(3, host, ok=True, at=at())]
            if moves and stage == "ivr":
                bad = [_attempt(k + 1, host, ok=False, at=at()) for k in range(2)]
                waves["upload"].append(
                    FileReassigned(
                        batch_id=batch_id,
                        file_name=name,
                        audio_uri=f"s3://audio/{name}",
                        stage="ivr",
                        from_host=host,
                        avoid=(host,),
                        assignment=1,
                        attempt_base=2,
                        reason="host dead",
                        attempts=tuple(bad),
                        requested_at=at(),
                    )
                )
                sc.attempts |= {(name, stage, a.number) for a in bad}
                host, assignment = HOSTS[(i + 1) % 2], 1
                sc.moved[name] = (host, assignment)
                # It restarts at denoise on the other host, its attempts counting on.
                ctx = FileContext(
                    audio_uri=f"s3://audio/{name}", host=host, assignment=1, attempt_base=MOVED_BASE
                )
                for n, redone in enumerate(STAGES[: STAGES.index(stage)]):
                    again = [_attempt(MOVED_BASE + 1, host, ok=True, at=at())] if n else []
                    waves[redone].append(
                        FileStageCompleted(
                            batch_id=batch_id,
                            file_name=name,
                            stage=redone,
                            context=ctx,
                            attempts=tuple(again),
                            completed_at=at(),
                        )
                    )
                    sc.attempts |= {(name, redone, a.number) for a in again}
                attempts = [_attempt(3, host, ok=True, at=at())]
            if stage == "triage":
                triage = TriageDecision(
                    route="skip" if skip else "stt",
                    rule="short-call" if skip else None,
                    reason="rules",
                )
            context = FileContext(
                audio_uri=f"s3://audio/{name}",
                host=host,
                assignment=assignment,
                attempt_base=MOVED_BASE if assignment else 0,
                triage=triage,
                transcript="hello" if stage in ("stt", "llm1", "llm2") else None,
            )
            waves[stage].append(
                FileStageCompleted(
                    batch_id=batch_id,
                    file_name=name,
                    stage=stage,
                    context=context,
                    attempts=tuple(attempts),
                    completed_at=at(),
                )
            )
            sc.attempts |= {(name, stage, a.number) for a in attempts}
            if skip and stage == "triage":
                sc.terminal["skipped"] += 1
                break
        else:
            sc.terminal["done"] += 1
    waves["failed"].append(
        DeadLetter(
            source_topic="cofi.ivr.127.0.0.2",
            partition=0,
            offset=5,
            consumer="gpu_stage",
            error="undecodable: bad json",
            value_b64="e30K",
            at=at(),
        )
    )
    for wave in ("upload", *STAGES):
        sc.events += waves[wave]
        if wave == "lid":
            sc.events += waves["failed"]  # failures interleave with the stages
    sc.poison.append(
        Undecodable(
            RecordMeta("cofi.done", 0, 999, 1_768_467_600_000), b"not json", "undecodable: not json"
        )
    )
    return sc


def _attempt(number: int, host: str, ok: bool, at: datetime) -> Attempt:
    return Attempt(
        number=number,
        host=host,
        ok=ok,
        started_at=at,
        duration_ms=100.0 + number,
        error=None if ok else "HTTP 503 from model",
        error_kind=None if ok else "transient",
        request={"n": number},
        response={"ok": ok},
    )


def _failure(
    batch_id: str, name: str, stage: str, host: str, attempts: list[Attempt], at: datetime
) -> FileFailed:
    return FileFailed(
        batch_id=batch_id,
        file_name=name,
        stage=stage,
        host=host,
        error_kind="permanent",
        error=f"{stage} gave up: HTTP 422",
        attempts=tuple(attempts),
        input_event={"context": {"host": host}},
        failed_at=at,
    )


def tracked(sc: Scenario) -> list[TrackedEvent]:
    return [*sc.events, *sc.poison]  # type: ignore[list-item]


# --- helpers ----------------------------------------------------------------------------


async def apply_in_polls(
    tracker: Tracker, events: Sequence[TrackedEvent], sizes: Callable[[], int]
) -> None:
    i = 0
    while i < len(events):
        size = sizes()
        await tracker.apply_events(events[i : i + size])
        i += size


async def dump(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, without autoincrement ids, in natural-key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        for table, key in TABLES:
            columns = [c for c in table.c if c.name != "id"]
            rows = await conn.execute(select(*columns).order_by(table.c[key]))
            out[table.name] = [tuple(r) for r in rows]
    return out


# Columns whose values may depend on the order the events were consumed in: none. A
# stage's milestones are provisional while it runs and rewritten from the events alone when
# it completes (services/tracker/milestones.py); every other value is a merge of events.
ORDER_DEPENDENT: dict[str, set[str]] = {}


async def state(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """`dump` without the order-dependent columns."""
    tables = await dump(engine)
    for table, _ in TABLES:
        names = [c.name for c in table.c if c.name != "id"]
        drop = ORDER_DEPENDENT.get(table.name, set())
        keep = [i for i, n in enumerate(names) if n not in drop]
        tables[table.name] = [tuple(row[i] for i in keep) for row in tables[table.name]]
    return tables


async def empty(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table, _ in TABLES:
            await conn.execute(delete(table))


def tracker_for(engine: AsyncEngine, interval: int = 100) -> Tracker:
    return Tracker(engine, TrackerOptions(topic_prefix="cofi", progress_interval=interval))


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    what: str,
    timeout_s: float,
    task: "asyncio.Task[None] | None" = None,
) -> None:
    """`tests.kafka_helpers.wait_until`, failing at once if the tracker's task stopped."""

    async def holds() -> bool:
        if await check():
            return True
        if task is not None and task.done():
            task.result()  # raises what stopped the tracker
            raise AssertionError(f"tracker stopped before {what}")
        return False

    await kafka_helpers.wait_until(holds, timeout_s, what, interval_s=0.2)


# --- through Kafka ----------------------------------------------------------------------


def route(event: Event, topics: Topics) -> tuple[str, bytes]:
    """The topic each event travels on in the pipeline."""
    if isinstance(event, FileUploaded | BatchClosed | FileReassigned):
        return topics.uploads, event.batch_id.encode()
    if isinstance(event, BatchCancelled):
        return topics.control, event.batch_id.encode()
    if isinstance(event, FileFailed):
        return topics.failed, file_key(event.batch_id, event.file_name)
    if isinstance(event, DeadLetter):
        return topics.failed, b"dead"
    assert isinstance(event, FileStageCompleted)
    key, host = file_key(event.batch_id, event.file_name), event.context.host or HOSTS[0]
    triage = event.context.triage
    route = triage.route if event.stage == TRIAGE and triage else None
    return output_topic(event.stage, topics, host, route), key


async def produce(
    bootstrap: str,
    topics: Topics,
    events: Sequence[Event],
    *,
    partitions: int = 2,
    poison: bool = True,
) -> int:
    """Create the topics and send each event where the pipeline would, then (`poison`) one
    record nobody can decode on the done topic; the number of records sent."""
    await ensure_topics(bootstrap, topics.all_topics(list(HOSTS)), partitions=partitions)
    producer = make_producer(bootstrap, f"{topics.prefix}-test")
    await producer.start()
    try:
        for event in events:
            topic, key = route(event, topics)
            await producer.send(topic, value=encode(event), key=key)
        if poison:
            await producer.send(topics.done, value=b"\x00 poison", key=b"poison")
        await producer.flush()
    finally:
        await producer.stop()
    return len(events) + int(poison)
