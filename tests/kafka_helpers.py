"""Helpers for tests on the real broker: read a topic until a condition holds."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition


async def read_topic(
    bootstrap: str,
    topics: list[str],
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout_s: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"reader-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []

    async def read_more() -> bool:
        if until(records):
            return True
        batch = await consumer.getmany(timeout_ms=200)
        for rs in batch.values():
            records.extend(rs)
        return until(records)

    try:
        await wait_until(
            read_more,
            timeout_s,
            lambda: f"a condition on {topics}; read {len(records)} records",
            interval_s=0,
        )
        return records
    finally:
        await consumer.stop()


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout_s: float = 30.0,
    what: str | Callable[[], str] = "condition",
    interval_s: float = 0.05,
) -> None:
    """Poll `predicate` (plain or async) until it holds; the suite's one waiting loop.

    Raises TimeoutError naming `what` (a callable is asked then, to show the latest state).
    Whatever the predicate raises (a dead service, a failed assertion) ends the wait at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        held = predicate()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {described}")
        await asyncio.sleep(interval_s)


async def read_to_end(
    bootstrap: str, topics: list[str], partitions_per_topic: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topics` (created with `partitions_per_topic`) up to their end offsets
    as of now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"crash-check-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(partitions_per_topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        unread = {tp for tp, end in ends.items() if end > 0}
        while unread:
            batch = await consumer.getmany(timeout_ms=500)
            for rs in batch.values():
                records.extend(rs)
            unread = {tp for tp in unread if await consumer.position(tp) < ends[tp]}
        return records
    finally:
        await consumer.stop()
