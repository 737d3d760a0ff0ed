"""What operators said on the compacted control topic, read by every stage: which batches
they cancelled (`cofi cancel`) and which GPU hosts they drained (`cofi drain`).

Each process reads the whole topic (no consumer group: every instance needs every batch)
and keeps reading, so a cancellation or a drain reaches running stages within a poll.
"""

import asyncio
import logging

from pydantic import ValidationError

from shared.events import HostDrained, control_event
from shared.kafka import Kafka, make_topic_reader, start_when_reachable

log = logging.getLogger(__name__)


class CancelledBatches:
    def __init__(self, kafka: Kafka, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.batches: set[str] = set()
        # Hosts drained by `cofi drain` (the latest word per host: a drain can be undone).
        self.drained_hosts: set[str] = set()

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self.batches

    def apply(self, raw: bytes | None) -> None:
        if raw is None:
            return  # a tombstone compacting the topic
        try:
            event = control_event.validate_json(raw)
        except ValidationError:
            log.warning("ignoring an unreadable control event on %s", self.topic)
            return
        if isinstance(event, HostDrained):
            if event.drained and event.host not in self.drained_hosts:
                log.warning("GPU host %s drained: %s", event.host, event.reason or "no reason")
                self.drained_hosts.add(event.host)
            elif not event.drained and event.host in self.drained_hosts:
                log.info("GPU host %s no longer drained", event.host)
                self.drained_hosts.discard(event.host)
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
