"""The tracker against real MariaDB and SQLite (and Kafka): migrations, a whole batch's
tables, replays that change nothing, and a round trip through the broker."""

import asyncio
import hashlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from sqlalchemy import UniqueConstraint, func, inspect, select, text
from sqlalchemy.event import listen

from services.tracker import bulk_insert
from services.tracker.engine import make_engine
from services.tracker.fold import TrackedEvent
from services.tracker.main import run
from services.tracker.migrate import migrate
from services.tracker.service import Tracker
from services.tracker.settings import TrackerSettings
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
    BatchCancelled,
    BatchClosed,
    FileContext,
    FileStageCompleted,
    FileUploaded,
    TriageDecision,
    encode,
)
from shared.kafka import ensure_topics, make_producer
from shared.runtime.sink_runner import SinkRunner
from shared.settings import GpuHost
from shared.topics import Topics
from tests.kafka_helpers import wait_until as wait_until_true
from tests.tracker_expected import assert_expected_tables
from tests.tracker_scenario import (
    HOSTS,
    T0,
    apply_in_polls,
    build_scenario,
    dump,
    empty,
    route,
    state,
    tracked,
    tracker_for,
    wait_until,
)


@pytest.fixture(params=["mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


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
    assert version == [("0007",)]
    for name, table in metadata.tables.items():
        columns, uniques = found[name]
        assert columns == {c.name for c in table.c}, name
        expected = {
            tuple(c.name for c in u.columns)
            for u in table.constraints
            if isinstance(u, UniqueConstraint)
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


async def test_on_mysql_a_batch_row_is_inserted_once_then_only_read(mariadb_url: str) -> None:
    """Polls after a batch's first read its batchStatus row (locked) instead of trying to
    insert it again: an INSERT IGNORE that hits the row costs a SHOW WARNINGS too. (SQLite
    inserts first in every poll, to take its single write lock before it reads.)"""
    await migrate(mariadb_url)
    sc = build_scenario()
    events = tracked(sc)
    engine = make_engine(mariadb_url)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        tracker = tracker_for(engine)
        polls = [events[: len(events) // 2], events[len(events) // 2 :]]
        inserts = []
        for poll in polls:
            statements.clear()
            await tracker.apply_events(poll)
            inserts.append(
                [s for s in statements if "batchStatus" in s and ("IGNORE" in s or "NOTHING" in s)]
            )
        assert [len(i) for i in inserts] == [1, 0]
        assert_expected_tables(sc, await dump(engine))
    finally:
        await engine.dispose()


async def test_mysql_bulk_writes_match_sqlalchemys_own(
    mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store sends MySQL its bulk statements precompiled (no SQLAlchemy work per row):
    every one of them is, and the tables are those SQLAlchemy's own executemany writes."""
    await migrate(mariadb_url)
    sc = build_scenario(n=120)
    tables = []
    for precompiled in (True, False):
        if not precompiled:
            monkeypatch.setattr(bulk_insert, "_prepare", lambda *args: None)
        engine = make_engine(mariadb_url)
        try:
            await empty(engine)
            await apply_in_polls(tracker_for(engine), tracked(sc), lambda: 80)
            prepared = bulk_insert._prepared[engine.sync_engine.dialect]
            assert len(prepared) >= 5
            assert (
                set(prepared.values()) == {None}
                if not precompiled
                else None not in prepared.values()
            )
            tables.append(await dump(engine))
        finally:
            await engine.dispose()
    assert tables[0] == tables[1]


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


def redelivered_across_partitions(
    events: list[TrackedEvent], partitions: int, rng: random.Random
) -> list[TrackedEvent]:
    """What a tracker may read: events keyed to `partitions` partitions (a file's events stay
    in order on its partition, as the stage topics are keyed), every event delivered twice
    (a partition is read up to a point, then again from the start, as after a crash before
    the offset commit, then its rest again), and the partitions interleaved at random."""
    streams: list[list[TrackedEvent]] = [[] for _ in range(partitions)]
    for event in events:
        key = getattr(event, "file_name", None) or getattr(event, "batch_id", "") or "poison"
        streams[int(hashlib.sha256(key.encode()).hexdigest(), 16) % partitions].append(event)
    delivered: list[list[TrackedEvent]] = []
    for stream in streams:
        cut = rng.randint(0, len(stream))
        delivered.append(stream[:cut] + stream + stream[cut:])
    out: list[TrackedEvent] = []
    while any(delivered):
        stream = rng.choice([d for d in delivered if d])
        take = rng.randint(1, 50)
        out += stream[:take]
        del stream[:take]
    return out


async def test_each_event_twice_out_of_order_across_partitions(db_url: str) -> None:
    """Every event delivered twice, partitions interleaved at random, polls of random sizes:
    the same tables as every event once in pipeline order (milestones' observational columns
    aside, see tests/tracker_scenario.py ORDER_DEPENDENT)."""
    await migrate(db_url)
    sc = build_scenario(n=200)
    events = tracked(sc)
    engine = make_engine(db_url)
    rng = random.Random(5)
    try:
        await apply_in_polls(tracker_for(engine), events, lambda: 500)
        reference = await state(engine)
        for partitions in (4, 7):
            await empty(engine)
            stream = redelivered_across_partitions(events, partitions, rng)
            assert len(stream) == 2 * len(events)
            await apply_in_polls(tracker_for(engine), stream, lambda: rng.randint(1, 300))
            assert await state(engine) == reference
            assert_expected_tables(sc, await dump(engine), n=200)
    finally:
        await engine.dispose()


# --- a cancelled batch ------------------------------------------------------------------


def cancelled_batch() -> tuple[list[TrackedEvent], datetime]:
    """30 files: 0-9 done; 10-19 through ivr when the batch is cancelled, except 19, in
    flight, which goes on to the end; 20-29 uploaded but never distributed. The cancel is
    read in the middle: before 19's later stages and before the uploads of 25-29."""
    cancelled_at = T0 + timedelta(minutes=5)
    names = [f"c-{i:02d}.wav" for i in range(30)]

    def stage_event(i: int, stage: str, minute: float) -> FileStageCompleted:
        return FileStageCompleted(
            batch_id="cancelled",
            file_name=names[i],
            stage=stage,
            context=FileContext(
                audio_uri=f"s3://{names[i]}",
                host=HOSTS[i % 2],
                triage=TriageDecision(route="stt") if stage in LATER else None,
            ),
            attempts=(Attempt(number=1, ok=True, started_at=T0, host=HOSTS[i % 2]),)
            if stage != "distribute"
            else (),
            completed_at=T0 + timedelta(minutes=minute),
        )

    early: list[TrackedEvent] = [
        FileUploaded(batch_id="cancelled", file_name=n, audio_uri=f"s3://{n}", uploaded_at=T0)
        for n in names[:25]
    ]
    early.append(BatchClosed(batch_id="cancelled", file_count=30, closed_at=T0))
    for i in range(20):
        stages = ALL_STAGES if i < 10 else ALL_STAGES[:3]
        early += [stage_event(i, stage, 1 + k * 0.1) for k, stage in enumerate(stages)]
    late: list[TrackedEvent] = [
        stage_event(19, stage, 6 + k * 0.1) for k, stage in enumerate(ALL_STAGES[3:])
    ]
    late += [
        FileUploaded(batch_id="cancelled", file_name=n, audio_uri=f"s3://{n}", uploaded_at=T0)
        for n in names[25:]
    ]
    cancel = BatchCancelled(batch_id="cancelled", reason="wrong batch", cancelled_at=cancelled_at)
    return [*early, cancel, *late], cancelled_at


ALL_STAGES = ("distribute", "denoise", "ivr", "lid", "triage", "stt", "llm1", "llm2")
LATER = ALL_STAGES[4:]


async def test_a_cancelled_batch_ends_its_unfinished_files_cancelled_in_any_order(
    db_url: str,
) -> None:
    await migrate(db_url)
    events, cancel_time = cancelled_batch()
    cancelled_at = cancel_time.replace(tzinfo=None)  # stored as naive UTC
    engine = make_engine(db_url)
    rng = random.Random(3)
    try:
        await apply_in_polls(tracker_for(engine, interval=5), events, lambda: 7)
        reference = await state(engine)
        tables = await dump(engine)
        for _ in range(2):
            await empty(engine)
            stream = events + events
            rng.shuffle(stream)
            await apply_in_polls(
                tracker_for(engine, interval=5), stream, lambda: rng.randint(1, 40)
            )
            assert await state(engine) == reference
    finally:
        await engine.dispose()

    fd_cols = [c.name for c in file_distribution.c if c.name != "id"]
    files = {
        row[fd_cols.index("file")]: dict(zip(fd_cols, row, strict=True))
        for row in tables["fileDistribution"]
    }
    ended = Counter(f["terminalState"] for f in files.values())
    assert ended == {"done": 11, "cancelled": 19}
    for i in (*range(10, 19), *range(20, 30)):
        f = files[f"c-{i:02d}.wav"]
        assert (f["terminalState"], f["finishedAt"]) == ("cancelled", cancelled_at)
    assert files["c-19.wav"]["terminalState"] == "done"  # in flight: it finished anyway
    assert files["c-12.wav"]["ivrDone"] == 1 and files["c-12.wav"]["lidDone"] == 0

    bs_cols = [c.name for c in batch_status.c if c.name != "id"]
    (batch,) = [dict(zip(bs_cols, row, strict=True)) for row in tables["batchStatus"]]
    assert (batch["status"], batch["cancelledAt"], batch["cancelReason"]) == (
        "Cancelled",
        cancelled_at,
        "wrong batch",
    )
    assert (batch["doneFiles"], batch["cancelledFiles"], batch["failedFiles"]) == (11, 19, 0)
    assert batch["completedAt"] is None
    # Ten files were never distributed: no stage is Complete, none is shown as failed.
    assert {batch[c] for c in bs_cols if c.endswith("Status") and c != "status"} == {"InProgress"}
    kinds = Counter(row[2] for row in tables["batchExecutionLog"])
    assert kinds["stage_complete"] == 0 and kinds["file_error"] == 0


async def test_a_cancel_after_the_last_file_leaves_the_batch_complete(db_url: str) -> None:
    await migrate(db_url)
    sc = build_scenario(n=100)
    late = BatchCancelled(
        batch_id=sc.batch_id, reason="too late", cancelled_at=T0 + timedelta(days=1)
    )
    engine = make_engine(db_url)
    try:
        await apply_in_polls(tracker_for(engine), [*tracked(sc), late], lambda: 300)
        tables = await dump(engine)
    finally:
        await engine.dispose()
    assert_expected_tables(sc, tables, n=100)


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


async def test_a_tracker_started_before_its_topics_reads_them_once_created(
    topic_prefix: str, kafka_bootstrap: str
) -> None:
    """It subscribes to a topic list after its consumer started: a start with the list would
    wait for every topic and give up (here after 3 s instead of 40)."""
    topics = Topics(topic_prefix).all_topics(["127.0.0.2"])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{topic_prefix}-tracker",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=3_000,
        metadata_max_age_ms=1_000,
    )
    applied: list[ConsumerRecord[bytes, bytes]] = []

    async def apply(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        applied.extend(records)

    runner = SinkRunner(name="tracker", consumer=consumer, topics=topics, apply=apply)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_until_true(lambda: runner.ready or task.done(), 30, "the consumer to start")
        assert not task.done() and runner.ready
        await ensure_topics(kafka_bootstrap, topics, partitions=1)
        producer = make_producer(kafka_bootstrap, f"{topic_prefix}-test")
        await producer.start()
        try:
            await producer.send_and_wait(topics[-2], b"late", key=b"k")  # the failed topic
        finally:
            await producer.stop()
        await wait_until_true(lambda: bool(applied) or task.done(), 60, "the record")
        assert [(r.topic, r.value) for r in applied] == [(topics[-2], b"late")]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
