"""What a bench run creates on the shared broker and database, and removes again.

Each run has its own topic prefix and its own databases (`bench_<run>_*`), so it never sees
another run's data and leaves nothing behind.
"""

import asyncio
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

log = logging.getLogger(__name__)


@asynccontextmanager
async def fresh_database(server_url: str, name: str) -> AsyncIterator[str]:
    """URL of a new, empty database `name`, dropped afterwards."""
    admin = create_async_engine(server_url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await admin.dispose()


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]


async def delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
        if mine:
            await admin.delete_topics(mine)
    except Exception as exc:  # cleanup must not hide the figures
        log.warning("could not delete topics of %s: %s", prefix, exc)
    finally:
        await admin.close()


def remove_faust_data(prefix: str, root: Path) -> None:
    # faust keeps a `<app id>-data` folder in its working directory, even with memory tables.
    shutil.rmtree(root / f"{prefix}-distributor-data", ignore_errors=True)


@asynccontextmanager
async def reader(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer with no group, for end offsets and reading assigned partitions."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    found: list[TopicPartition] = []
    for topic in topics:
        for _ in range(50):
            parts = consumer.partitions_for_topic(topic)
            if parts:
                break
            await consumer._client.force_metadata_update()  # first lookup of a new topic
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"topic {topic} has no partitions in the metadata")
        found += [TopicPartition(topic, p) for p in sorted(parts)]
    return found


async def end_offsets(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> dict[str, int]:
    """Records ever written to each topic (sum of its partitions' end offsets)."""
    parts = await partitions_of(consumer, topics)
    ends = await consumer.end_offsets(parts)
    totals: dict[str, int] = {}
    for tp, end in ends.items():
        totals[tp.topic] = totals.get(tp.topic, 0) + end
    return totals


async def mean_record_size(consumer: AIOKafkaConsumer, topic: str, sample: int = 300) -> int:
    """Mean value size of the first `sample` records of a topic."""
    parts = await partitions_of(consumer, [topic])
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    sizes: list[int] = []
    ends = await consumer.end_offsets(parts)
    available = sum(ends.values())
    want = min(sample, available)
    while len(sizes) < want:
        batch = await consumer.getmany(timeout_ms=500)
        sizes += [len(r.value or b"") for rs in batch.values() for r in rs]
    consumer.unsubscribe()
    if not sizes:
        raise RuntimeError(f"no records on {topic} to take message sizes from")
    return round(sum(sizes[:want]) / len(sizes[:want]))
