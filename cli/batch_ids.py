"""Whether a batch id is taken: the tracker's tables, and the uploads the tracker has not
applied yet.

The tracker's tables are authoritative for every batch the tracker has applied (they outlive
the topics' retention). What it has not applied yet is on the uploads topic past its consumer
group's committed offsets, so that tail is read too. Without a tracker database the uploads
topic is read whole, as far back as its retention keeps it. Every message of a batch is keyed
by its id (shared/upload_client.py), so only keys are compared.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.kafka import Kafka, make_admin, make_topic_reader

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


async def batch_in_tables(engine: "AsyncEngine", batch_id: str) -> bool:
    from sqlalchemy import text

    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT 1 FROM batchStatus WHERE batchId = :b"), {"b": batch_id}
        )
        return found.first() is not None


async def applied_offsets(kafka: Kafka, group_id: str, topic: str) -> dict[int, int]:
    """Per partition of `topic`, the offset below which the tracker's group has applied
    everything (its committed offset); partitions it never committed are absent."""
    admin = make_admin(kafka)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic}


async def batch_on_topic(
    kafka: Kafka, topic: str, batch_id: str, since: Mapping[int, int] | None = None
) -> bool:
    """Whether a message keyed `batch_id` is on `topic`, from the offsets `since` (per
    partition; the beginning where absent) to the end it had when reading started."""
    key = batch_id.encode()
    reader = make_topic_reader(kafka, topic)
    try:
        await reader.start()
        partitions = list(reader.assignment())
        end = await reader.end_offsets(partitions)
        for tp in partitions:
            start = (since or {}).get(tp.partition)
            if start is not None:
                reader.seek(tp, min(start, end[tp]))
        while True:
            positions = {tp: await reader.position(tp) for tp in partitions}
            if all(positions[tp] >= end[tp] for tp in partitions):
                return False
            batch = await reader.getmany(timeout_ms=500)
            for records in batch.values():
                if any(r.key == key for r in records):
                    return True
    finally:
        await reader.stop()
