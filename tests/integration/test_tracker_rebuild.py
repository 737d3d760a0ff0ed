"""The log is the source of truth: a second tracker (its own consumer group, an empty database)
reading the same topics in another interleaving rebuilds the very same tables, ids aside."""

import asyncio
from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord

from services.tracker.engine import make_engine
from services.tracker.main import run
from services.tracker.settings import TrackerSettings
from shared.settings import GpuHost
from tests.database_helpers import fresh_database
from tests.tracker_expected import assert_expected_tables
from tests.tracker_scenario import HOSTS, build_scenario, dump, produce, wait_until


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


async def dump_tables(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = make_engine(database_url)
    try:
        return await dump(engine)
    finally:
        await engine.dispose()


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
    reference = await dump_tables(mariadb_url)
    assert_expected_tables(sc, reference, n=500, interval=50)

    async with fresh_database(mariadb_server_url) as rebuild_url:
        second = first.model_copy(
            update={
                "database_url": rebuild_url,
                "tracker_group_id": f"{topic_prefix}-rebuild",
                "tracker_max_batch": 7,
            }
        )
        await track_everything(second, produced)
        rebuilt = await dump_tables(rebuild_url)
    for table, rows in reference.items():
        assert rebuilt[table] == rows, f"{table} differs after a rebuild"
