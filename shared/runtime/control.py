"""Which batches an operator cancelled, read by every stage from the compacted control topic.

Each process reads the whole topic (no consumer group: every instance needs every batch)
and keeps reading, so a cancellation reaches running stages within a poll.
"""

import asyncio
import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from pydantic import ValidationError

from shared.events import BatchCancelled

log = logging.getLogger(__name__)


class CancelledBatches:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.batches: set[str] = set()
        self.caught_up = asyncio.Event()

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self.batches

    def apply(self, raw: bytes | None) -> None:
        try:
            event = BatchCancelled.model_validate_json(raw or b"")
        except ValidationError:
            log.warning("ignoring an unreadable control event on %s", self.topic)
            return
        if event.batch_id not in self.batches:
            log.info("batch %s cancelled: %s", event.batch_id, event.reason or "no reason given")
        self.batches.add(event.batch_id)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = await self._partitions(consumer, stop)
            if not partitions:
                return  # stopped before the topic existed
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        self.apply(record.value)
                if not self.caught_up.is_set():
                    positions = [await consumer.position(tp) for tp in partitions]
                    if all(pos >= end[tp] for pos, tp in zip(positions, partitions, strict=True)):
                        self.caught_up.set()
        finally:
            await consumer.stop()

    async def _partitions(
        self, consumer: AIOKafkaConsumer, stop: asyncio.Event
    ) -> list[TopicPartition]:
        while not stop.is_set():
            try:
                await consumer.topics()  # refreshes metadata
                ids = consumer.partitions_for_topic(self.topic) or set()
            except KafkaError as exc:
                log.warning("control topic %s not readable yet: %s", self.topic, exc)
                ids = set()
            if ids:
                return [TopicPartition(self.topic, p) for p in sorted(ids)]
            await asyncio.sleep(1.0)
        return []
