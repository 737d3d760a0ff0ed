"""The tracker against real MariaDB and SQLite (and Kafka): migrations, a whole batch's
tables, replays that change nothing, and a round trip through the broker."""

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from sqlalchemy import func, select
from sqlalchemy.event import listen

from services.tracker import bulk_insert
from services.tracker.engine import make_engine
from services.tracker.fold import TrackedEvent
from services.tracker.main import run
from services.tracker.migrate import migrate
from services.tracker.service import Tracker
from services.tracker.settings import TrackerSettings
from services.tracker.tables import (
    batch_status,
    dead_letters,
)
from shared.events import (
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
        created = [c.name for c in dead_letters.c if c.name != "id"].index("createdAt")
        assert {row[created] is not None for row in first["deadLetters"]} == {True}
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
