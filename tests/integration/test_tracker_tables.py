"""The tracker against real MariaDB and SQLite (and Kafka): migrations, a whole batch's
tables, replays that change nothing, and a round trip through the broker."""

import asyncio
import hashlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy import Table, delete, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracker.fold import RecordMeta, TrackedEvent, Undecodable
from services.tracker.main import run
from services.tracker.migrate import migrate
from services.tracker.service import Tracker, TrackerOptions
from services.tracker.settings import TrackerSettings
from services.tracker.store import make_engine
from services.tracker.tables import (
    batch_execution_log,
    batch_status,
    dead_letters,
    file_distribution,
    metadata,
    processing_logs,
)
from shared.events import (
    Attempt,
    BatchClosed,
    DeadLetter,
    Event,
    FileContext,
    FileFailed,
    FileStageCompleted,
    FileUploaded,
    TriageDecision,
    encode,
    file_key,
)
from shared.kafka import ensure_topics, make_producer
from shared.settings import GpuHost
from shared.topics import Topics

HOSTS = ("127.0.0.2", "127.0.0.3")
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
STAGES = ("distribute", "denoise", "ivr", "lid", "triage", "stt", "llm1", "llm2")
FAIL_AT = ("denoise", "ivr", "lid", "triage", "stt", "llm1", "llm2")
TABLES: tuple[tuple[Table, str], ...] = (
    (file_distribution, "fileKey"),
    (batch_status, "batchId"),
    (processing_logs, "attemptKey"),
    (batch_execution_log, "eventKey"),
    (dead_letters, "letterKey"),
)


@pytest.fixture(params=["mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


# --- a synthetic batch ------------------------------------------------------------------


@dataclass
class Scenario:
    batch_id: str
    events: list[Event] = field(default_factory=list)
    poison: list[Undecodable] = field(default_factory=list)
    terminal: Counter[str] = field(default_factory=Counter)
    failed_stage: dict[str, str] = field(default_factory=dict)
    attempts: set[tuple[str, str, int]] = field(default_factory=set)
    file_errors: int = 0


def build_scenario(batch_id: str = "batch-300", n: int = 300) -> Scenario:
    """`n` files: most done, every tenth failing at some stage, every tenth triaged out,
    every fiftieth failing at ivr and then succeeding on a retry; transient retries as extra
    attempts; one very long and one non-ASCII name; one dead letter and one poison record.
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
                # The retry goes on numbering where the failed run stopped.
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
    for stage in ("upload", *STAGES):
        sc.events += waves[stage]
        if stage == "lid":
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
        host=host,  # type: ignore[arg-type]
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


# Columns that record the moment a row was written (which poll completed the batch, what a
# milestone counted then): the same events in another order may write other values there.
ORDER_DEPENDENT = {
    "batchStatus": {"completedAt"},
    "batchExecutionLog": {"totalFiles", "failedFiles", "skippedFiles", "createdAt"},
}


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
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if task is not None and task.done():
            task.result()  # raises what stopped the tracker
            raise AssertionError(f"tracker stopped before {what}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.2)


def assert_expected_tables(
    sc: Scenario, tables: dict[str, list[tuple[Any, ...]]], n: int = 300
) -> None:
    fd_cols = [c.name for c in file_distribution.c if c.name != "id"]
    files = {
        row[fd_cols.index("file")]: dict(zip(fd_cols, row, strict=True))
        for row in tables["fileDistribution"]
    }
    assert len(files) == n
    assert Counter(f["terminalState"] for f in files.values()) == sc.terminal
    for name, f in files.items():
        assert f["fileKey"] == hashlib.sha256(name.encode()).hexdigest()
        assert f["batchId"] == sc.batch_id and f["ip"] in HOSTS
        assert f["createdAt"] is not None and f["updatedAt"] >= f["createdAt"]
        if f["terminalState"] == "done":
            assert [
                f[c]
                for c in ("denoiseDone", "ivrDone", "lidDone", "sttDone", "llm1Done", "llm2Done")
            ] == [1] * 6
            assert f["triageRoute"] == "stt" and f["finishedAt"] is not None
        elif f["terminalState"] == "skipped":
            assert (f["lidDone"], f["sttDone"], f["triageRoute"], f["triageRule"]) == (
                1,
                0,
                "skip",
                "short-call",
            )
        else:
            stage = sc.failed_stage[name]
            assert f["failedStage"] == stage and "HTTP 422" in f["failedError"]
            flags = {s: f[f"{s}Done"] for s in ("denoise", "ivr", "lid", "stt", "llm1", "llm2")}
            assert flags == {s: int(STAGES.index(s) < STAGES.index(stage)) for s in flags}
    retried = [
        f for f in files.values() if f["failedStage"] == "ivr" and f["terminalState"] == "done"
    ]
    assert retried, "a file that failed and then succeeded is done"

    bs_cols = [c.name for c in batch_status.c if c.name != "id"]
    (batch,) = [dict(zip(bs_cols, row, strict=True)) for row in tables["batchStatus"]]
    assert {batch[c] for c in bs_cols if c.endswith("Status")} == {"Complete"}
    assert (batch["status"], batch["totalFiles"], batch["knownFiles"]) == ("Complete", n, n)
    assert (batch["doneFiles"], batch["skippedFiles"], batch["failedFiles"]) == (
        sc.terminal["done"],
        sc.terminal["skipped"],
        sc.terminal["failed"],
    )
    assert batch["completedAt"] is not None

    pl_cols = [c.name for c in processing_logs.c if c.name != "id"]
    logs = [dict(zip(pl_cols, row, strict=True)) for row in tables["processing_logs"]]
    assert {(r["call_id"], r["stage_name"], r["attempt"]) for r in logs} == sc.attempts
    assert len(logs) == len(sc.attempts)
    assert {r["status"] for r in logs} == {"success", "failure"}

    el_cols = [c.name for c in batch_execution_log.c if c.name != "id"]
    events = [dict(zip(el_cols, row, strict=True)) for row in tables["batchExecutionLog"]]
    kinds = Counter(r["eventType"] for r in events)
    assert kinds == {
        "stage_start": 8,
        "stage_complete": 8,
        "stage_progress": 8 * (n // 100),
        "file_error": sc.file_errors,
    }
    progress = sorted(
        (r["stage"], r["processedFiles"]) for r in events if r["eventType"] == "stage_progress"
    )
    assert progress == sorted((s, k) for s in STAGES for k in range(100, n + 1, 100))
    assert len(tables["deadLetters"]) == 2


# --- migrations -------------------------------------------------------------------------


async def test_migrations_build_the_schema_of_tables_py(db_url: str) -> None:
    await migrate(db_url)
    await migrate(db_url)  # a second run is a no-op
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()

            def schema(sync_conn: Any) -> dict[str, tuple[set[str], set[tuple[str, ...]]]]:
                insp = inspect(sync_conn)
                return {
                    name: (
                        {c["name"] for c in insp.get_columns(name)},
                        {tuple(u["column_names"]) for u in insp.get_unique_constraints(name)}
                        | {
                            tuple(i["column_names"])
                            for i in insp.get_indexes(name)
                            if i.get("unique")
                        },
                    )
                    for name in metadata.tables
                }

            found = await conn.run_sync(schema)
    finally:
        await engine.dispose()
    assert version == [("0003",)]
    for name, table in metadata.tables.items():
        columns, uniques = found[name]
        assert columns == {c.name for c in table.c}, name
        expected = {
            tuple(c.name for c in u.columns)
            for u in table.constraints
            if u.__class__.__name__ == "UniqueConstraint"
        }
        assert expected <= uniques, name


async def test_upgrading_an_old_database_keeps_every_row(db_url: str) -> None:
    await migrate(db_url, "0001")
    engine = make_engine(db_url)
    old_files = [
        ("a.wav", "10.0.0.1", 7, 1),
        ("b.wav", "10.0.0.2", 7, 0),
        ("a.wav", "10.0.0.1", 7, 0),
        ("a.wav", "10.0.0.3", 8, 1),
    ]  # a duplicate row
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO fileDistribution (file, ip, batchId, ivrDone, lidDone, sttDone, "
                    "llm1Done, llm2Done) VALUES (:f, :ip, :b, :ivr, 0, 0, 0, 0)"
                ),
                [{"f": f, "ip": ip, "b": b, "ivr": ivr} for f, ip, b, ivr in old_files],
            )
            await conn.execute(
                text(
                    "INSERT INTO batchStatus (batchId, dbInsertionStatus, denoiseStatus, status) "
                    "VALUES (7, 'Complete', 'InProgress', 'dbInsertionDone')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO processing_logs (call_id, batch_id, stage_name, status, "
                    "error_message, input_payload, output_payload) "
                    "VALUES ('a.wav', 7, 'ivr', 'failure', 'boom', '{}', NULL)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO batchExecutionLog (batchId, stage, eventType, fileName, status, "
                    "totalFiles, processedFiles) VALUES (7, 'ivr', 'stage_start', NULL, "
                    "'started', 3, 0)"
                )
            )
        await engine.dispose()
        await migrate(db_url, "0002")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO fileDistribution (file, ip, batchId, denoiseDone) "
                    "VALUES ('c.wav', '10.0.0.2', 7, 1)"
                )
            )
        await engine.dispose()
        await migrate(db_url)

        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        file_distribution.c.id,
                        file_distribution.c.file,
                        file_distribution.c.ip,
                        file_distribution.c.batchId,
                        file_distribution.c.ivrDone,
                        file_distribution.c.denoiseDone,
                        file_distribution.c.fileKey,
                    ).order_by(file_distribution.c.id)
                )
            ).all()
            batch = (await conn.execute(select(batch_status))).mappings().one()
            log_rows = (
                await conn.execute(
                    select(
                        processing_logs.c.call_id,
                        processing_logs.c.batch_id,
                        processing_logs.c.error_message,
                    )
                )
            ).all()
            exec_rows = (
                await conn.execute(
                    select(batch_execution_log.c.batchId, batch_execution_log.c.status)
                )
            ).all()
        sha = {
            name: hashlib.sha256(name.encode()).hexdigest() for name in ("a.wav", "b.wav", "c.wav")
        }
        assert [tuple(r[1:6]) for r in rows] == [
            ("a.wav", "10.0.0.1", "7", 1, 0),
            ("b.wav", "10.0.0.2", "7", 0, 0),
            ("a.wav", "10.0.0.1", "7", 0, 0),
            ("a.wav", "10.0.0.3", "8", 1, 0),
            ("c.wav", "10.0.0.2", "7", 0, 1),
        ]
        keys = [r.fileKey for r in rows]
        assert keys[0] == keys[3] == sha["a.wav"] and keys[1] == sha["b.wav"]
        assert keys[2] not in sha.values() and len(keys[2]) == 64  # the duplicate's own key
        assert (
            batch["batchId"],
            batch["dbInsertionStatus"],
            batch["denoiseStatus"],
            batch["status"],
        ) == ("7", "Complete", "InProgress", "dbInsertionDone")
        assert log_rows == [("a.wav", "7", "boom")]
        assert exec_rows == [("7", "started")]

        # Events for an old file land on its old row.
        await tracker_for(engine).apply_events(
            [
                FileStageCompleted(
                    batch_id="7",
                    file_name="b.wav",
                    stage="lid",
                    context=FileContext(audio_uri="s3://b.wav", host="10.0.0.9"),
                    completed_at=T0,
                )
            ]
        )
        async with engine.connect() as conn:
            b_rows = (
                await conn.execute(
                    select(
                        file_distribution.c.ip,
                        file_distribution.c.lidDone,
                        file_distribution.c.ivrDone,
                    ).where(file_distribution.c.file == "b.wav")
                )
            ).all()
        assert b_rows == [("10.0.0.2", 1, 0)]
    finally:
        await engine.dispose()


# --- a whole batch, then replays --------------------------------------------------------


async def test_a_batch_yields_the_expected_tables(db_url: str) -> None:
    await migrate(db_url)
    sc = build_scenario()
    engine = make_engine(db_url)
    try:
        await apply_in_polls(tracker_for(engine), tracked(sc), lambda: 97)
        assert_expected_tables(sc, await dump(engine))
    finally:
        await engine.dispose()


async def test_replays_leave_the_tables_unchanged(db_url: str) -> None:
    await migrate(db_url)
    sc = build_scenario()
    events = tracked(sc)
    engine = make_engine(db_url)
    rng = random.Random(7)
    try:
        tracker = tracker_for(engine)
        await apply_in_polls(tracker, events, lambda: 250)
        before = await dump(engine)
        again = events + events
        rng.shuffle(again)
        await apply_in_polls(tracker, again, lambda: rng.randint(1, 400))
        assert await dump(engine) == before
        await apply_in_polls(tracker, events[len(events) * 2 // 3 :], lambda: 33)  # a suffix
        assert await dump(engine) == before
    finally:
        await engine.dispose()


async def test_the_order_of_events_does_not_change_the_state(db_url: str) -> None:
    """On an empty database, any order and any poll split give the same files, attempts,
    batch state and milestones (milestone counters and times record the moment they were
    logged, so only those differ)."""
    await migrate(db_url)
    sc = build_scenario(n=200)
    events = tracked(sc)
    engine = make_engine(db_url)
    rng = random.Random(11)
    try:
        await apply_in_polls(tracker_for(engine), events, lambda: 500)
        reference = await state(engine)
        assert_expected_tables(sc, await dump(engine), n=200)
        for _ in range(2):
            await empty(engine)
            shuffled = list(events)
            rng.shuffle(shuffled)
            await apply_in_polls(tracker_for(engine), shuffled, lambda: rng.randint(1, 300))
            assert await state(engine) == reference
    finally:
        await engine.dispose()


async def test_two_trackers_sharing_the_work_agree_with_one(db_url: str) -> None:
    """A consumer group split over two trackers: both write the same batch at once, each
    recount must still see the other's files (batchStatus agrees with fileDistribution)."""
    await migrate(db_url)
    sc = build_scenario(n=200)
    events = tracked(sc)
    engines = [make_engine(db_url) for _ in range(2)]

    async def apply_with_retries(tracker: Tracker, stream: list[TrackedEvent]) -> None:
        for i in range(0, len(stream), 40):
            for attempt in range(20):  # as SinkRunner does: a deadlock is retried
                try:
                    await tracker.apply_events(stream[i : i + 40])
                    break
                except Exception:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))

    try:
        await apply_in_polls(tracker_for(engines[0]), events, lambda: 500)
        reference = await state(engines[0])
        await empty(engines[0])
        halves: list[list[TrackedEvent]] = [[], []]
        for event in events:  # partitions by file, as the stage topics are keyed
            name = getattr(event, "file_name", "")
            halves[int(hashlib.sha256(name.encode()).hexdigest(), 16) % 2].append(event)
        await asyncio.gather(
            *(apply_with_retries(tracker_for(e), h) for e, h in zip(engines, halves, strict=True))
        )
        got = await state(engines[0])
        assert got["batchStatus"] == reference["batchStatus"]
        assert got == reference
    finally:
        for engine in engines:
            await engine.dispose()


# --- through Kafka ----------------------------------------------------------------------


def route(event: Event, topics: Topics) -> tuple[str, bytes]:
    """The topic each event travels on in the pipeline."""
    if isinstance(event, FileUploaded | BatchClosed):
        return topics.uploads, event.batch_id.encode()
    if isinstance(event, FileFailed):
        return topics.failed, file_key(event.batch_id, event.file_name)
    if isinstance(event, DeadLetter):
        return topics.failed, b"dead"
    assert isinstance(event, FileStageCompleted)
    key, host = file_key(event.batch_id, event.file_name), event.context.host or HOSTS[0]
    triage = event.context.triage
    topic = {
        "distribute": topics.gpu("denoise", host),
        "denoise": topics.gpu("ivr", host),
        "ivr": topics.gpu("lid", host),
        "lid": topics.triage,
        "triage": topics.gpu("stt", host) if triage and triage.route == "stt" else topics.done,
        "stt": topics.llm("llm1"),
        "llm1": topics.llm("llm2"),
        "llm2": topics.done,
    }[event.stage]
    return topic, key


async def test_kafka_round_trip_and_a_second_tracker_changes_nothing(
    db_url: str, topic_prefix: str, kafka_bootstrap: str
) -> None:
    sc = build_scenario(n=300)
    settings = TrackerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        gpu_hosts=[GpuHost(ip=h) for h in HOSTS],
        database_url=db_url,
        tracker_max_batch=400,
        log_json=False,
    )
    topics = settings.topics
    await ensure_topics(kafka_bootstrap, topics.all_topics(list(HOSTS)), partitions=2)
    producer = make_producer(kafka_bootstrap, f"{topic_prefix}-test")
    await producer.start()
    try:
        for event in sc.events:
            topic, key = route(event, topics)
            await producer.send(topic, value=encode(event), key=key)
        await producer.send(topics.done, value=b"\x00 poison", key=b"poison")
        await producer.flush()
    finally:
        await producer.stop()
    produced = len(sc.events) + 1

    engine = make_engine(db_url)

    async def complete() -> bool:
        try:
            async with engine.connect() as conn:
                status = (
                    await conn.execute(
                        select(batch_status.c.status).where(batch_status.c.batchId == sc.batch_id)
                    )
                ).scalar_one_or_none()
        except Exception:  # tables not migrated yet
            return False
        return status == "Complete"

    def counting(
        stop: asyncio.Event, seen: list[int]
    ) -> Callable[[Sequence[ConsumerRecord[bytes, bytes]]], Awaitable[None]]:
        async def after_apply(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            seen[0] += len(records)
            if seen[0] >= produced:
                stop.set()

        return after_apply

    try:
        stop, seen = asyncio.Event(), [0]
        task = asyncio.create_task(run(settings, stop, after_apply=counting(stop, seen)))
        try:
            await wait_until(complete, "the batch to be Complete", 120, task)
            await wait_until(lambda: _done(stop), "every record to be applied", 60, task)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        assert seen[0] == produced
        first = await dump(engine)
        assert_expected_tables(sc, first)
        assert {row[-1] is not None for row in first["deadLetters"]} == {True}
        async with engine.connect() as conn:
            letters = (
                await conn.execute(
                    select(func.count())
                    .select_from(dead_letters)
                    .where(dead_letters.c.consumer == "tracker")
                )
            ).scalar_one()
        assert letters == 1  # the poison record on the done topic

        second = settings.model_copy(update={"tracker_group_id": f"{topic_prefix}-again"})
        stop2, seen2 = asyncio.Event(), [0]
        task2 = asyncio.create_task(run(second, stop2, after_apply=counting(stop2, seen2)))
        try:
            await wait_until(lambda: _done(stop2), "the second tracker to replay", 120, task2)
        finally:
            stop2.set()
            await asyncio.wait_for(task2, 30)
        assert seen2[0] == produced
        assert await dump(engine) == first
    finally:
        await engine.dispose()


async def _done(stop: asyncio.Event) -> bool:
    return stop.is_set()
