"""The log is the source of truth: a second tracker (its own consumer group, an empty database)
reading the same topics in another interleaving rebuilds the very same tables, ids aside."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiokafka.structs import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.tracker.engine import make_engine
from services.tracker.main import run
from services.tracker.settings import TrackerSettings
from shared.settings import GpuHost
from tests.tracker_scenario import (
    HOSTS,
    assert_expected_tables,
    build_scenario,
    dump,
    produce,
    wait_until,
)


@asynccontextmanager
async def empty_database(server_url: str) -> AsyncIterator[str]:
    """A second fresh MariaDB database (the `mariadb_url` fixture gives one per test)."""
    name = f"cofi_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server_url)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await admin.dispose()


async def track_everything(settings: TrackerSettings, produced: int) -> None:
    """Run a tracker until it has applied `produced` records."""
    stop, seen = asyncio.Event(), [0]

    async def after_apply(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        seen[0] += len(records)
        if seen[0] >= produced:
            stop.set()

    task = asyncio.create_task(run(settings, stop, after_apply=after_apply))
    try:

        async def stopped() -> bool:
            return stop.is_set()

        await wait_until(stopped, f"{settings.group_id} to apply every record", 180, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert seen[0] == produced


async def test_a_rebuild_from_the_topics_gives_the_same_tables(
    mariadb_url: str, mariadb_server_url: str, topic_prefix: str, kafka_bootstrap: str
) -> None:
    """Tracker one reads a batch's topics in large polls; tracker two, in its own group and
    an empty database, reads them in polls of 7 records, so every poll splits and
    interleaves the partitions differently. Every row of every table is the same, ids
    aside: milestones included (their times and counts come from the events alone)."""
    sc = build_scenario(n=500, failovers=True)
    first = TrackerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        gpu_hosts=[GpuHost(ip=h) for h in HOSTS],
        database_url=mariadb_url,
        tracker_max_batch=2000,
        progress_update_interval=50,
        log_json=False,
    )
    produced = await produce(kafka_bootstrap, first.topics, sc.events, partitions=3)
    await track_everything(first, produced)
    engine = make_engine(mariadb_url)
    try:
        reference = await dump(engine)
    finally:
        await engine.dispose()
    assert_expected_tables(sc, reference, n=500, interval=50)

    async with empty_database(mariadb_server_url) as rebuild_url:
        second = first.model_copy(
            update={
                "database_url": rebuild_url,
                "tracker_group_id": f"{topic_prefix}-rebuild",
                "tracker_max_batch": 7,
            }
        )
        await track_everything(second, produced)
        engine = make_engine(rebuild_url)
        try:
            rebuilt = await dump(engine)
        finally:
            await engine.dispose()
    for table, rows in reference.items():
        assert rebuilt[table] == rows, f"{table} differs after a rebuild"
