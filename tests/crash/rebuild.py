"""`database_lost`: the tracker's database is lost mid-batch; a fresh tracker (its own consumer
group, an empty database) rebuilds the tables from the topics while the batch goes on. After
the batch, a third tracker rebuilds them once more into another empty database, from the
topics alone: the two must be identical, ids aside (the log is the source of truth)."""

import asyncio
import hashlib
import signal
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from services.tracker.main import run as run_tracker
from services.tracker.settings import TrackerSettings
from shared.settings import parse_gpu_hosts
from tests.crash.harness import ChaosRun
from tests.crash.infra import fresh_database
from tests.crash.invariants import Outcome
from tests.kafka_helpers import wait_until
from tests.tracker_scenario import TABLES

REBUILT_GROUP = "tracker-rebuilt"


async def lose_the_database(run: ChaosRun, _: object) -> None:
    """kill -9 the tracker, drop its database and create it again empty, then start a tracker
    in a new consumer group: it migrates the empty database and reads every topic from the
    beginning while the other services go on."""
    await run.wait_for("llm1", 0.3)
    run.record("database lost (when llm1 had 30%): kill -9 the tracker, drop the database")
    await run.kill("tracker", signal.SIGKILL)
    url = make_url(run.config.database_url)
    admin = create_async_engine(url.set(database=None), poolclass=NullPool)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP DATABASE `{url.database}`"))
            await conn.execute(text(f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4"))
    finally:
        await admin.dispose()
    await run.engine.dispose()  # no pooled connection of the old database is reused
    group = f"{run.config.topic_prefix}-{REBUILT_GROUP}"
    run.group.env = {**run.group.env, "TRACKER_GROUP_ID": group}
    await run.restart("tracker")
    run.record(f"a fresh tracker (group {group}) rebuilds into the empty database")
    # The invariants read the tables once the batch is finished: by then the new tracker must
    # also have read what is left on the topics (events of files that finished early).
    await run.wait_finished()
    await _group_caught_up(run, group)


async def _group_caught_up(run: ChaosRun, group: str) -> None:
    settings = run.config.settings()
    topics = settings.topics.all_topics(settings.host_ips)
    ends = await _end_offsets(run.config.bootstrap, topics, run.config.partitions)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=run.config.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:

        async def committed() -> bool:
            run.assert_alive()
            for tp, end in ends.items():
                if (await consumer.committed(tp) or 0) < end:
                    return False
            return True

        await wait_until(committed, 600, f"{group} to commit every topic's end", interval_s=0.5)
    finally:
        await consumer.stop()


async def rebuild_agrees(run: ChaosRun, outcome: Outcome) -> None:
    """A third tracker over the same topics, after the batch, into another empty database:
    the same rows in every table, ids aside."""
    settings = TrackerSettings(
        kafka_bootstrap_servers=run.config.bootstrap,
        topic_prefix=run.config.topic_prefix,
        gpu_hosts=parse_gpu_hosts(run.config.gpu_hosts),
        stage_partitions=run.config.partitions,
        tracker_group_id=f"{run.config.topic_prefix}-tracker-third",
        log_json=False,
    )
    topics = settings.topics.all_topics(settings.host_ips)
    ends = await _end_offsets(run.config.bootstrap, topics, run.config.partitions)
    server = make_url(run.config.database_url).set(database=None)
    async with fresh_database(server.render_as_string(hide_password=False)) as third_url:
        await _track_to(settings.model_copy(update={"database_url": third_url}), ends)
        third = create_async_engine(third_url, poolclass=NullPool)
        try:
            ours, theirs = await digests(run.engine), await digests(third)
        finally:
            await third.dispose()
    differ = [t for t in ours if ours[t] != theirs[t]]
    if differ:
        outcome.fail(
            "the tables differ from a rebuild from the topics: "
            + ", ".join(f"{t} ({ours[t][0]} vs {theirs[t][0]} rows)" for t in differ)
        )


async def digests(engine: AsyncEngine) -> dict[str, tuple[int, str]]:
    """Per table, its number of rows and a sha256 of every row without its id, in key order."""
    out: dict[str, tuple[int, str]] = {}
    async with engine.connect() as conn:
        for table, key in TABLES:
            columns = [c for c in table.c if c.name != "id"]
            digest, count = hashlib.sha256(), 0
            result = await conn.stream(select(*columns).order_by(table.c[key]))
            async for row in result:
                digest.update(repr(tuple(row)).encode())
                count += 1
            out[table.name] = (count, digest.hexdigest())
    return out


async def _end_offsets(
    bootstrap: str, topics: list[str], partitions: int
) -> dict[TopicPartition, int]:
    """The end offset of every non-empty partition of `topics` (each has `partitions`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        return {tp: end for tp, end in (await consumer.end_offsets(parts)).items() if end > 0}
    finally:
        await consumer.stop()


async def _track_to(settings: TrackerSettings, ends: dict[TopicPartition, int]) -> None:
    """Run a tracker until it has applied every record below `ends`."""
    stop = asyncio.Event()
    reached: dict[TopicPartition, int] = {}

    async def after_apply(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            reached[tp] = max(reached.get(tp, 0), r.offset + 1)

    async def caught_up() -> bool:
        if task.done():
            task.result()
            raise AssertionError("the third tracker stopped")
        return all(reached.get(tp, 0) >= end for tp, end in ends.items())

    assert ends, "no records on the topics"
    task = asyncio.create_task(run_tracker(settings, stop, after_apply=after_apply))
    try:
        await wait_until(caught_up, 600, "the third tracker to read every topic", interval_s=0.5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
