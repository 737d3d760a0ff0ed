"""Which batches an operator cancelled, read by every stage from the compacted control topic.

Each process reads the whole topic (no consumer group: every instance needs every batch)
and keeps reading, so a cancellation reaches running stages within a poll.
"""

import asyncio
import logging

from pydantic import ValidationError

from shared.events import BatchCancelled
from shared.kafka import Kafka, make_topic_reader, start_when_reachable

log = logging.getLogger(__name__)


class CancelledBatches:
    def __init__(self, kafka: Kafka, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.batches: set[str] = set()

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
        reader = make_topic_reader(self.kafka, self.topic)
        if not await start_when_reachable(reader, "control topic reader", stop):
            return
        try:
            while not stop.is_set():
                batch = await reader.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        self.apply(record.value)
        finally:
            await reader.stop()
